"""The guard on what the bank may read: every audio path goes through ``check_not_reserved``.

Reserved packages (``RESERVED``) are held out for evaluation or are not ours to train on; this module
must never open a file itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

RESERVED = ("asterisk-core-sounds-it", "asterisk-core-sounds-ru", "asterisk-prompt-it-menardi",
            "asterisk-moh-opsound", "codec2-examples")
"""Packages whose audio is held out (kept for evaluation or not ours to train on)."""

_LANG_DIR_RE = re.compile(r"^(it|ru)([_.-].*)?$", re.IGNORECASE)
_ALLOWED_LANG_RE = re.compile(r"^(en|es|fr)([_-].*)?$", re.IGNORECASE)
_RESERVED_SUBSTRINGS = tuple(RESERVED) + ("menardi", "codec2", "opsound")


def _reserved_reason(path: Path) -> str | None:
    text = path.as_posix().lower()
    for marker in _RESERVED_SUBSTRINGS:
        if marker in text:
            return f"it contains {marker!r}"
    parts = [p for p in path.parts if p not in ("/", "")]
    # The last part is only a directory name when it has no suffix (a file may be "it.g722").
    dir_parts = parts if not Path(parts[-1] if parts else "").suffix else parts[:-1]
    for p in parts:
        low = p.lower()
        if low == "moh" or low.startswith(("moh-", "moh_")) or "-moh" in low:
            return "it is a music-on-hold directory"
    for p in dir_parts:
        if _LANG_DIR_RE.match(p):
            return f"{p!r} is an Italian or Russian language directory"
    lower = [p.lower() for p in parts]
    for i, p in enumerate(lower[:-1]):
        if p == "sounds" and "asterisk" in lower[:i]:
            lang = parts[i + 1]
            if not _ALLOWED_LANG_RE.match(lang):
                return f"asterisk language directory {lang!r} is not one of en*, es*, fr*"
            return None
    if lower and lower[-1] == "sounds" and "asterisk" in lower:
        return "it is the root of all asterisk languages (name an en*, es* or fr* directory)"
    return None


def check_not_reserved(path: str | os.PathLike[str]) -> Path:
    """Raise ValueError if ``path`` (or what it resolves to) belongs to a reserved package.

    Returns the path unchanged as a ``Path``. Only en*, es* and fr* asterisk sound
    directories pass; Italian/Russian language directories, music on hold, Menardi prompts
    and codec2 samples never do, whatever symlinks lead there.
    """
    p = Path(path)
    for candidate in (p.absolute(), Path(os.path.realpath(p))):
        reason = _reserved_reason(candidate)
        if reason:
            raise ValueError(f"refusing to read {p}: reserved audio ({reason}); only asterisk en/es/fr may be used")
    return p
