"""Build frozen dataclasses from YAML data, strictly, with one-line errors.

Why not a generic library: every error must fit on one line and name the key path, the bad
value and what is allowed (``target.threads: expected an integer >= 1, got 0``), and the
dataclasses stay plain so they can be sent to workers as dicts. Field metadata carries the
bounds: ``field(default=1, metadata={"ge": 1})``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from autocompress.errors import ConfigError

T = TypeVar("T")
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def build(cls: type[T], data: Any, where: str) -> T:
    """Validate ``data`` against dataclass ``cls`` and return an instance.

    Args:
        cls: a dataclass type whose fields carry type hints (and optional bounds metadata).
        data: a mapping (from YAML), or None for all defaults.
        where: the key path used in error messages (``"target"``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    _reject_unknown(data, fields, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        values[name] = _convert(hints[name], value, path)
        _check_bounds(fields[name], values[name], path)
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing required key(s) {missing}")
    return cls(**values)


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain JSON-ready data (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _reject_unknown(data: Mapping[str, Any], fields: Mapping[str, Any], where: str) -> None:
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{path}: unknown key{hint} (allowed: {', '.join(sorted(fields))})")


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(get_args(hint), value, path)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{path}: {_show(value)} is not allowed; use one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_show(value)}")
        (item,) = get_args(hint)[:1] or (Any,)
        items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        _, item = get_args(hint) or (str, Any)
        return {str(k): _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    return _convert_scalar(hint, value, path)


def _convert_union(options: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{path}: a value is required here, got null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(option, value, path)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {_show(value)} fits no option")


def _convert_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {_show(value)}")
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # a bug in our schema


def _check_bounds(field: dataclasses.Field[Any], value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str, list, dict, tuple)):
        return
    for key, symbol in _BOUNDS.items():
        if key not in field.metadata:
            continue
        bound = field.metadata[key]
        ok = {
            "ge": value >= bound,
            "gt": value > bound,
            "le": value <= bound,
            "lt": value < bound,
        }[key]
        if not ok:
            raise ConfigError(f"{path}: expected a value {symbol} {bound}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
