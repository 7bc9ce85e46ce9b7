"""Keras model -> full-int8 TFLite conversion with a parity report (needs edge-msl[train])."""
