"""``python -m train_tf.simulate``: see :mod:`train_tf.simulate.cli`."""

import sys

from train_tf.simulate.cli import main

sys.exit(main())
