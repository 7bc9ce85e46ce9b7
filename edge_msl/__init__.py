"""edge-msl: multiple sound source localization on edge boards (device side: numpy + TFLite runtime).

The public API is :class:`edge_msl.Localizer` (``edge_msl/api.py``); it is imported on first use so that
``import edge_msl.<module>`` stays as light as the module itself.
"""

__version__ = "0.2.0"

__all__ = ["Localizer", "__version__"]


def __getattr__(name: str):
    if name == "Localizer":
        from .api import Localizer

        return Localizer
    raise AttributeError(f"module 'edge_msl' has no attribute {name!r}")
