"""Typed option dataclasses: the machinery behind every config section and every method's
arguments.

A dataclass that inherits :class:`Options` checks the type of every field when it is built,
from a file or from Python (``TrainConfig(amp="false")`` is an error, not a truthy string),
and :func:`from_dict` builds one from a mapping, rejecting unknown keys with the list of the
valid ones. Errors are :class:`ConfigError` and name the key, what was expected and what
was found.

>>> @dataclass
... class Args(Options):
...     theta: float = 0.5
>>> from_dict(Args, {"theta": 1}, "method_args.")
Args(theta=1.0)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

__all__ = ["ConfigError", "Options", "check", "from_dict", "coerce"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that is not valid."""


def check(ok: bool, key: str, value: object, expected: str) -> None:
    """Raise ``ConfigError("<key> must be <expected>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    for option in typing.get_args(tp):
        try:
            return coerce(value, option, key)
        except ConfigError:
            continue
    names = " or ".join(getattr(o, "__name__", str(o)) for o in typing.get_args(tp))
    raise ConfigError(f"{key} must be of type {names}, got {value!r}")


def _coerce_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be of type float, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be of type float, got {value!r}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotated type ``tp``: ints are accepted for floats, a
    mapping for a nested dataclass; a bool is never an int."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if origin is typing.Literal:
        check(value in typing.get_args(tp), key, value, " or ".join(map(repr, typing.get_args(tp))))
        return value
    if tp is type(None):
        check(value is None, key, value, "None")
        return None
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        return _coerce_float(value, key)
    if tp is Any:
        return value
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type[T], d: Any, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping; unknown keys are an error listing the
    valid ones, and every value is type-checked. ``prefix`` names the section in errors
    (``"train."``)."""
    section = prefix.rstrip(".") or "config"
    if not isinstance(d, dict):
        raise ConfigError(f"{section} must be a mapping, got {d!r}")
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + str(k) for k in unknown)} in {where}; "
                          f"valid keys: {', '.join(valid) or '(none)'}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(v, hints[k], prefix + k) for k, v in d.items()})


class Options:
    """Base of option dataclasses: every field's value is type-checked (and ints turned into
    floats where a float is expected) when the dataclass is built, then :meth:`validate`
    checks the values. Subclasses set :attr:`section` to name their keys in errors."""

    section: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        prefix = f"{self.section}." if self.section else ""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            coerced = coerce(value, hints[f.name], prefix + f.name)
            if isinstance(coerced, float) and not math.isfinite(coerced) and f.name not in self.non_finite:
                raise ConfigError(f"{prefix}{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, coerced)
        self.validate()

    #: float fields that may be inf or NaN (none by default)
    non_finite: typing.ClassVar[frozenset[str]] = frozenset()

    def validate(self) -> None:
        """Check values beyond their types (ranges, choices); raise :class:`ConfigError`."""

    def key(self, name: str) -> str:
        """The dotted name of field ``name`` in errors (``train.lr``)."""
        return f"{self.section}.{name}" if self.section else name
