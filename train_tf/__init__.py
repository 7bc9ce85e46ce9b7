"""Training side of edge-msl: room simulation, the Keras model, training and evaluation."""
