"""The one way to declare and check a setting: a dataclass field with its default, its check and a docstring.

Every settings dataclass (the daemon's config sections, the array geometry, the region layout, the temporal
decode, the SRP refinement, separation, calibration, the training side's simulation, network shape, loss
weights, optimisation, dry-signal bank, dynamic scenes and calibrate's front end) derives from
:class:`Settings`, reads tables with its one :meth:`Settings.from_dict` and fails with :class:`SettingError`,
whose one line names the key, the value and what is allowed. Pure Python: it must not read files.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any, Callable, ClassVar, Mapping


class SettingError(ValueError):
    """A setting is invalid; ``str()`` is one line naming the key, the value and what is allowed."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None, allowed: str | None = None) -> None:
        super().__init__(message)
        self.key, self.value, self.allowed = key, value, allowed


def shown(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (an error message stays one readable line)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid(key: str, value: Any, allowed: str) -> SettingError:
    """``<key> = <value> is invalid; allowed: <allowed>``."""
    return SettingError(f"{key} = {shown(value)} is invalid; allowed: {allowed}", key=key, value=value, allowed=allowed)


# ----------------------------------------------------------------------------------------------
# checks: ``check(key, value)`` returns the (normalized) value or raises SettingError

Check = Callable[[str, Any], Any]


def integer(lo: int, hi: int | None = None) -> Check:
    """An int (not a bool) in [lo, hi] (hi None: no upper bound)."""
    allowed = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"

    def check(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise invalid(key, v, allowed)
        return v
    return check


def number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, noun: str = "a number",
           as_given: bool = False) -> Check:
    """A finite int or float (not a bool) in the interval, returned as a float (``as_given``: as it was given, an
    int staying an int, so that a stored file reads back and writes out byte-identical)."""
    if math.isfinite(lo) and math.isfinite(hi):
        allowed = f"{noun} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif math.isfinite(lo):
        allowed = f"{noun} {'>' if lo_open else '>='} {lo:g}"
    elif math.isfinite(hi):
        allowed = f"{noun} {'<' if hi_open else '<='} {hi:g}"
    else:
        allowed = f"a finite {noun.split()[-1]}"

    def check(key: str, v: Any) -> float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if not (ok and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)):
            raise invalid(key, v, allowed)
        return v if as_given else float(v)
    return check


def boolean(key: str, v: Any) -> bool:
    """true or false."""
    if not isinstance(v, bool):
        raise invalid(key, v, "true or false")
    return v


def choice(*choices: Any) -> Check:
    """One of ``choices`` (strings or numbers), returned as that choice: a value equal to one (a number for a
    number, ``512.0`` is ``512``; never a bool, never a string for a number or the other way round)."""
    allowed = " or ".join(repr(c) for c in choices)

    def check(key: str, v: Any) -> Any:
        if not isinstance(v, bool):
            for c in choices:
                if isinstance(v, str) == isinstance(c, str) and v == c:
                    return c
        raise invalid(key, v, allowed)
    return check


def text(max_len: int = 4096, pattern: re.Pattern[str] | None = None, what: str = "a string",
         empty: bool = True) -> Check:
    """A string of at most ``max_len`` characters without NUL, matching ``pattern`` when not empty."""
    def check(key: str, v: Any) -> str:
        if not isinstance(v, str) or len(v) > max_len or "\x00" in v or (not empty and not v) \
                or (pattern is not None and v and not pattern.match(v)):
            raise invalid(key, v, what)
        return v
    return check


def _each(key: str, v: Any, inner: Check, fits: Callable[[int], bool], shape: str, each: str) -> tuple[Any, ...]:
    """``v``, a list or tuple whose length ``fits``, as a tuple of what ``inner`` makes of each value; else one
    error: ``shape``, or ``each`` and what ``inner`` allows (the check :func:`pair` and :func:`items` share)."""
    if not isinstance(v, (list, tuple)) or not fits(len(v)):
        raise invalid(key, v, shape)
    try:
        return tuple(inner(key, x) for x in v)
    except SettingError as exc:
        raise invalid(key, v, f"{each} {exc.allowed}") from None


def pair(inner: Check) -> Check:
    """A range ``[low, high]`` (a list or tuple of two), each what ``inner`` allows, low <= high; as a tuple."""
    def check(key: str, v: Any) -> tuple[Any, Any]:
        lo, hi = _each(key, v, inner, lambda n: n == 2, "a range [low, high]", "a range [low, high], each")
        if lo > hi:
            raise invalid(key, v, "a range [low, high] with low <= high")
        return lo, hi
    return check


def items(inner: Check, min_len: int = 0) -> Check:
    """A list or tuple of at least ``min_len`` values, each what ``inner`` allows; as a tuple."""
    def check(key: str, v: Any) -> tuple[Any, ...]:
        return _each(key, v, inner, lambda n: n >= min_len, f"a list of at least {min_len} value(s)",
                     "a list, each value")
    return check


def table_of(cls: type) -> Check:
    """Settings of ``cls`` (a :class:`Settings` subclass): an instance, or a table its ``from_dict`` reads (whose
    own errors name its own keys)."""
    def check(key: str, v: Any) -> Any:
        if isinstance(v, cls):
            return v
        if not isinstance(v, Mapping):
            raise invalid(key, v, f"a {cls.TABLE} table")
        return cls.from_dict(v)
    return check


def optional(inner: Check) -> Check:
    """None, or what ``inner`` allows."""
    def check(key: str, v: Any) -> Any:
        return None if v is None else inner(key, v)
    return check


def setting(default: Any, check: Check, **kw: Any) -> Any:
    """A settings field: its default and its check (the docstring goes on the line below it)."""
    return dataclasses.field(default=default, metadata={"check": check}, **kw)


def required(check: Check) -> Any:
    """A settings field without a default (a table must give it): its check (the docstring goes below it)."""
    return dataclasses.field(metadata={"check": check})


def checked_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`setting` or :func:`required` (the keys a table may set)."""
    return [f for f in dataclasses.fields(cls) if "check" in f.metadata]


# ----------------------------------------------------------------------------------------------
# secrets are named, never echoed

_SECRET_NAME_RE = re.compile(r"pas|pw|psw|word|secret|token|cred|auth|key|priv|sig", re.IGNORECASE)
"""Key names whose value may be a secret (also misspelt: ``pasword``, ``passwd``, ``pwd``, ``api_key``)."""


def looks_secret(key: str) -> bool:
    """True for a key name that may hold a secret, misspellings included (a mistyped password key still holds
    the password)."""
    name = str(key).lower()
    return bool(_SECRET_NAME_RE.search(name)) or any(
        difflib.SequenceMatcher(None, name, s).ratio() >= 0.6 for s in ("password", "passwd", "secret", "token"))


def _tuples(value: Any) -> Any:
    """Lists (JSON, TOML) as tuples, nested ones too, so frozen settings stay hashable."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


class Settings:
    """Base of every settings dataclass: each :func:`setting` field is checked on construction (also by
    ``dataclasses.replace``), :meth:`check_together` checks what spans fields, one ``from_dict``/``to_dict``."""

    KEY: ClassVar[str] = "{}"
    """How a key is named in errors, e.g. ``"decode.{}"`` or ``"[mqtt] {}"``."""
    TABLE: ClassVar[str] = "settings"
    """How the table is named in errors, e.g. ``"decode"`` or ``"[mqtt]"``."""
    PLAIN_DATA: ClassVar[bool] = False
    """True: :meth:`to_dict` gives JSON data (tuples as lists, nested settings as tables), as the training side's
    files (params.json, a data set's meta.json) store it."""

    def __post_init__(self) -> None:
        for f in checked_fields(type(self)):
            object.__setattr__(self, f.name, f.metadata["check"](self.KEY.format(f.name), getattr(self, f.name)))
        self.check_together()

    def check_together(self) -> None:
        """Checks across fields (raise :func:`invalid`); none by default."""

    @classmethod
    def from_dict(cls, table: Any, base: "Settings | None" = None) -> Any:
        """Settings from a table (keys not given come from ``base``, else the defaults; lists become tuples);
        a non-table, an unknown key or a bad value is a :class:`SettingError`."""
        cls.check_keys(table)
        merged = base.to_dict() if base is not None else {}
        merged.update({k: _tuples(v) for k, v in table.items()})
        missing = [f.name for f in checked_fields(cls) if f.name not in merged
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SettingError(f"{cls.TABLE} needs key(s) {missing}", key=missing[0], allowed=", ".join(missing))
        return cls(**merged)

    @classmethod
    def check_keys(cls, table: Any) -> None:
        """A :class:`SettingError` for a non-table or a key that is no setting of ``cls``."""
        names = [f.name for f in checked_fields(cls)]
        if not isinstance(table, Mapping):
            raise invalid(cls.TABLE, table, f"a table of {', '.join(names)}")
        unknown = sorted((k for k in table if k not in names), key=str)
        if unknown:
            given = ", ".join(f"{k} = {'<redacted>' if looks_secret(k) else shown(table[k])}" for k in unknown)
            raise SettingError(f"unknown {cls.TABLE} key(s) {unknown}; allowed: {sorted(names)} (given: {given[:200]})",
                               key=str(unknown[0]), value=table[unknown[0]], allowed=", ".join(sorted(names)))

    def to_dict(self) -> dict[str, Any]:
        """The settable fields as a plain dict (TOML/JSON); :meth:`from_dict` reads it back. With
        :attr:`PLAIN_DATA`, JSON data: tuples as lists, nested settings as their own ``to_dict``."""
        out = {f.name: getattr(self, f.name) for f in checked_fields(type(self))}
        return _plain(out) if self.PLAIN_DATA else out


def _plain(value: Any) -> Any:
    """``value`` as JSON data: nested settings as their ``to_dict``, tuples as lists (through JSON, so the data
    is what a file written from it reads back)."""
    import json

    def nested(v: Any) -> Any:
        if isinstance(v, Settings):
            return nested(v.to_dict())
        if isinstance(v, Mapping):
            return {k: nested(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [nested(x) for x in v]
        return v
    return json.loads(json.dumps(nested(value)))


__all__ = ["SettingError", "Settings", "Check", "setting", "required", "checked_fields", "invalid", "shown", "integer",
           "number", "boolean", "choice", "text", "pair", "items", "table_of", "optional", "looks_secret"]
