"""The model store: where calibrated models live on a device (the daemon's state directory), which model the
daemon runs, and install/rollback of a model and its sidecar as one unit. Used by the daemon and by
``edge-msl calibrate``; it must import neither numpy nor TensorFlow, and never leave a .tflite beside another
model's sidecar."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/edge-msl")
"""The daemon's state directory (systemd ``StateDirectory=edge-msl``, passed to it as $STATE_DIRECTORY)."""


class ModelStoreError(RuntimeError):
    """An install or rollback that did not happen; the message says why, and the installed model is unchanged."""


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The daemon's state directory: the first entry of $STATE_DIRECTORY (systemd sets it), else the default."""
    env = os.environ if environ is None else environ
    return Path(env.get("STATE_DIRECTORY", str(DEFAULT_STATE_DIR)).split(":")[0])


def models_dir(state: str | Path) -> Path:
    """Where calibrated models go: ``<state>/models``."""
    return Path(state) / "models"


def calibrated_model(state: str | Path, array_name: str) -> Path:
    """The calibrated model of ``array_name`` in ``state`` (it may not exist): ``<state>/models/<array>.tflite``,
    its sidecar beside it."""
    return models_dir(state) / f"{array_name}.tflite"


def previous_model(state: str | Path, array_name: str) -> Path:
    """The pair an install replaced, kept for :func:`rollback`: ``<state>/models/<array>.previous.tflite``."""
    return models_dir(state) / f"{array_name}.previous.tflite"


def installed_model(state: str | Path, array_name: str) -> Path:
    """The model the daemon runs for ``array_name`` when none is configured: the state directory's calibrated one,
    else the packaged one."""
    p = calibrated_model(state, array_name)
    if p.exists():
        return p
    from .runtime import default_model_path  # numpy: only when the packaged model is asked for

    return default_model_path(array_name)


HEAD_SUFFIX = ".head.tflite"
"""A model's learned temporal head is a file of its name with this suffix (``uca8-r10.head.tflite``): not a model."""


def head_file(tflite: str | Path) -> Path:
    """Where a model's learned temporal head lives: ``<name>.head.tflite`` beside ``<name>.tflite``
    (:class:`edge_msl.runtime.TemporalHead`); a sidecar without ``temporal_head`` ignores it."""
    p = Path(tflite)
    return p.with_name(p.stem + HEAD_SUFFIX)


def install(tflite: str | Path, state: str | Path, array_name: str) -> Path:
    """Copy ``tflite`` and its sidecar to ``<state>/models/<array>.tflite/.json``, keeping the pair they replace as
    ``<array>.previous.tflite/.json`` (for :func:`rollback`).

    One unit: every file is first written in full under a temporary name (a full disk fails here, before anything
    the daemon reads has changed), then all are renamed into place; an error at any point puts back what was
    there, so the state directory never holds a .tflite with another model's sidecar."""
    src = Path(tflite)
    for p in (src, src.with_suffix(".json")):
        if not p.is_file():
            raise ModelStoreError(f"{p} not found; run 'edge-msl calibrate convert' first")
    models = models_dir(state)
    try:
        models.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise ModelStoreError(f"cannot write {models} (permission denied); run as root or the daemon's user, or "
                              "pass --state-dir DIR") from None
    dst = calibrated_model(state, array_name)
    prev = previous_model(state, array_name)
    copies = [(src.with_suffix(".json"), dst.with_suffix(".json")), (src, dst)]
    if head_file(src).is_file():  # a learned temporal head travels with its model
        copies.append((head_file(src), head_file(dst)))
    if dst.exists():
        old = [(dst.with_suffix(".json"), prev.with_suffix(".json")), (dst, prev)]
        if head_file(dst).is_file():
            old.append((head_file(dst), head_file(prev)))
        copies = old + copies
    # staged from the current files before any rename, so the previous pair is the old current pair
    _swap(models, copies, f"could not install into {models}", "; free some space and run install again")
    return dst


def rollback(state: str | Path, array_name: str) -> Path:
    """Put ``<array>.previous`` back in place (the current one becomes the previous, so a second rollback undoes).
    The four files change as one unit, like :func:`install`."""
    models = models_dir(state)
    dst, prev = calibrated_model(state, array_name), previous_model(state, array_name)
    if not prev.exists() or not prev.with_suffix(".json").exists():
        raise ModelStoreError(f"no previous model {prev} to roll back to (nothing was installed over another "
                              "model yet)")
    copies = [(dst.with_suffix(".json"), prev.with_suffix(".json")), (dst, prev),
              (prev.with_suffix(".json"), dst.with_suffix(".json")), (prev, dst)]
    for a, b in ((dst, prev), (prev, dst)):
        if head_file(a).is_file():
            copies.append((head_file(a), head_file(b)))
    _swap(models, copies, f"could not roll back in {models}")
    return dst


def notify_daemon(pid_file: str | Path | None = None, unit: str = "edge-msl") -> str:
    """Ask a running daemon to reload (SIGHUP): the process in ``pid_file``, else the systemd unit if active."""
    if pid_file is not None:
        try:
            pid = int(Path(pid_file).read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
            return f"sent SIGHUP to pid {pid} ({pid_file})"
        except (OSError, ValueError, IndexError) as exc:
            return f"could not signal the daemon from {pid_file} ({exc}); restart it to load the new model"
    if shutil.which("systemctl"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit], capture_output=True)
        if active.returncode == 0:
            r = subprocess.run(["systemctl", "kill", "-s", "HUP", unit], capture_output=True, text=True)
            if r.returncode == 0:
                return f"sent SIGHUP to {unit}.service"
            return f"systemctl kill -s HUP {unit} failed ({r.stderr.strip()}); restart it to load the new model"
    return "no running daemon found (no --pid-file, no active edge-msl.service); it loads the model at its next start"


# ------------------------------------------------------------------ one unit of renames


def _stage(src: Path, dst: Path) -> Path:
    """Copy ``src`` to a hidden temporary name next to ``dst``, flushed to disk; removed again on any error."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_all(pairs: list[tuple[Path, Path]]) -> None:
    """Move each staged file onto its target as one unit: every target ends up new, or (on any error) every target
    is as it was. The old targets are kept as hard links first, which take no space, so the undo cannot fail for
    want of space."""
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for _, target in pairs:
            if target.exists():
                bak = target.with_name(f".{target.name}.bak")
                bak.unlink(missing_ok=True)
                try:
                    os.link(target, bak)
                except OSError:  # a file system without hard links: a copy, made before anything changes
                    shutil.copyfile(target, bak)
                backups[target] = bak
            else:
                backups[target] = None
        for staged, target in pairs:
            os.replace(staged, target)
            done.append(target)
    except BaseException:
        for target in reversed(done):
            bak = backups.get(target)
            try:
                if bak is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(bak, target)
            except OSError:
                pass
        raise
    finally:
        for staged, _ in pairs:
            staged.unlink(missing_ok=True)
        for bak in backups.values():
            if bak is not None:
                bak.unlink(missing_ok=True)


def _swap(models: Path, copies: list[tuple[Path, Path]], what: str, on_full_disk: str = "") -> None:
    """Copy every (source, target) pair to a temporary file beside its target, then replace the
    targets as one unit (:func:`_replace_all`); on any error nothing the daemon reads has changed,
    the temporary files are removed and a :class:`ModelStoreError` starting with ``what`` says why
    (plus ``on_full_disk`` when the disk is full)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for s, d in copies:
            staged.append((_stage(s, d.with_name(f"{d.name}.new")), d))
        _replace_all(staged)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ModelStoreError(f"{what} ({why}); the installed model is unchanged"
                              + (on_full_disk if exc.errno == errno.ENOSPC else "")) from None
    _fsync_dir(models)
