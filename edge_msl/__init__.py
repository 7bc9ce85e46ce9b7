"""edge-msl: multiple sound source localization on edge boards (device side: numpy + TFLite runtime)."""

__version__ = "0.2.0"
