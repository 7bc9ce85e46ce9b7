"""The dry-signal bank, one job a module: ``reserved`` (what may never be read), ``tts`` (texts, speech
engines, audio decoders), ``levels`` (frame levels, trimming), ``synth`` (noises, music, babble), ``store``
(the mu-law .npz format, ``DryBank``), ``split`` (train / test, minute limits), ``build`` (``build_bank``).
Its command line is ``python -m train_tf.signals``.
"""
