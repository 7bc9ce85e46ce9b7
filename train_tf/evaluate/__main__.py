"""``python -m train_tf.evaluate``: see :mod:`train_tf.evaluate.cli`."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from train_tf.evaluate.cli import main  # noqa: E402  (after the backend is chosen)

sys.exit(main())
