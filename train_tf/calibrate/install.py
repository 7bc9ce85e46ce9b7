"""install / rollback: the calibrated model into the daemon's state directory, through edge_msl.model_store
(where it lives, which model the daemon runs, the one-unit renames).

It must not decide whether a model is better (validate does); store errors become CalibrationError.
"""

from __future__ import annotations

from pathlib import Path

from edge_msl import model_store
from edge_msl.arrays import MicArray
from edge_msl.model_store import notify_daemon

from .session import CalibrationError

__all__ = ["install", "rollback", "installed_model", "notify_daemon"]


def installed_model(state_dir: str | Path, array: MicArray) -> Path:
    """The model the daemon would run for ``array``: the state directory's calibrated one, else the packaged one."""
    return model_store.installed_model(state_dir, array.name)


def install(tflite: str | Path, state_dir: str | Path, array_name: str) -> Path:
    """:func:`edge_msl.model_store.install`, its errors as :class:`CalibrationError`."""
    try:
        return model_store.install(tflite, state_dir, array_name)
    except model_store.ModelStoreError as exc:
        raise CalibrationError(str(exc)) from None


def rollback(state_dir: str | Path, array_name: str) -> Path:
    """:func:`edge_msl.model_store.rollback`, its errors as :class:`CalibrationError`."""
    try:
        return model_store.rollback(state_dir, array_name)
    except model_store.ModelStoreError as exc:
        raise CalibrationError(str(exc)) from None
