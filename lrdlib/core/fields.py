"""Typed fields of the frozen config dataclasses, normalised in one place.

Every config's ``__post_init__`` calls ``normalise(self)`` first. It coerces each field to the
type its annotation names, so that equal configs are equal objects with equal hashes (``1`` and
``1.0``, ``True`` and ``1``, ``numpy.int64(3)`` and ``3``, a list and a tuple), and it rejects a
value of the wrong type with a ``ValueError`` that names the class, the field and what is valid.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing


def _fail(obj, name: str, v, want: str):
    raise ValueError(f"{type(obj).__name__}.{name}={v!r}: expected {want}")


def _coerce(obj, name: str, v, hint):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):                      # X | None
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(obj, name, v, inner)
    if origin is tuple:
        if isinstance(v, (str, bytes)) or not isinstance(v, typing.Sequence):
            _fail(obj, name, v, f"a tuple of {', '.join(a.__name__ for a in args if a is not Ellipsis)}")
        items = args[:1] * len(v) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(v):
            _fail(obj, name, v, f"{len(items)} values")
        return tuple(_coerce(obj, f"{name}[{i}]", x, h) for i, (x, h) in enumerate(zip(v, items)))
    if hint is bool:
        if isinstance(v, numbers.Integral) and int(v) in (0, 1):
            return bool(v)
        _fail(obj, name, v, "True or False")
    if hint is int:
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
        _fail(obj, name, v, "an integer")
    if hint is float:
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
            return float(v)
        _fail(obj, name, v, "a finite number")
    if hint is str:
        if isinstance(v, str):
            return v
        _fail(obj, name, v, "a string")
    if dataclasses.is_dataclass(hint) and not isinstance(v, hint):
        _fail(obj, name, v, f"a {hint.__name__}")
    return v


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def normalise(obj) -> None:
    """Coerce every field of the frozen dataclass ``obj`` to its annotated type, in place."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        new = _coerce(obj, f.name, v, hints[f.name])
        if new is not v:
            object.__setattr__(obj, f.name, new)


def check_range(obj, name: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ValueError unless lo ≤ field ≤ hi (strict where ``*_open``); None = unbounded."""
    v = getattr(obj, name)
    ok = (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        lb = "-inf" if lo is None else f"{lo:g}" if isinstance(lo, float) else str(lo)
        ub = "inf" if hi is None else f"{hi:g}" if isinstance(hi, float) else str(hi)
        _fail(obj, name, v, f"a value in {'(' if lo_open or lo is None else '['}{lb}, {ub}{')' if hi_open or hi is None else ']'}")
