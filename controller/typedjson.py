"""Dataclass records to JSON and back, checked against their type hints.

The records of results.json (controller/results.py) are declared once, as
dataclasses. `to_json` writes a record's fields in their declared order; `from_json`
reads them back strictly: a value of the wrong type, an unknown key or a missing
required field is a FieldError that names where it is and what it should be.

Reading rules, so that a record's declaration says everything:
- a field missing from the JSON takes its default; with no default, None when its
  type admits None; otherwise the field is required;
- `int` accepts a whole float (5.0), `float` accepts an int (kept as the int, so a
  file read and written again is unchanged), and a non-finite float reads as None;
- `Any` (and `dict[str, Any]`) is JSON kept as it is: parts whose layout another
  producer owns (the plan, the hosts' facts, the pools' summaries);
- `Literal[...]` accepts exactly its values.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

# Metadata of a field left out of the JSON while it is None or empty:
# `field(default=None, metadata=WRITTEN_WHEN_SET)`. Files that never set it lack it.
WRITTEN_WHEN_SET = types.MappingProxyType({"written_when_set": True})

Record = TypeVar("Record")


class FieldError(ValueError):
    """A JSON value that does not fit its record; `where` is its path (points[3].cpu)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}")
        self.where = where


def json_type(value: Any) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def to_json(record: Any) -> dict[str, Any]:
    """A record as JSON-ready data, fields in their declared order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.metadata.get("written_when_set") and value in (None, [], {}, ()):
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_json(cls: type[Record], data: Any, where: str) -> Record:
    """A record of type `cls` from JSON data, checked field by field."""
    if not isinstance(data, dict):
        raise FieldError(where, f"is {json_type(data)}; expected an object")
    hints = _hints(cls)
    declared = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in declared}
    unknown = [key for key in data if key not in names]
    if unknown:
        raise FieldError(
            f"{where}.{unknown[0]}",
            f"is not a field this servelab knows; {where} holds {', '.join(sorted(names))}",
        )
    values = {}
    for f in declared:
        if f.name in data:
            values[f.name] = read_value(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
        elif _admits_none(hints[f.name]):
            values[f.name] = None
        else:
            raise FieldError(where, f"has no '{f.name}'")
    return cls(**values)


def read_value(hint: Any, value: Any, where: str) -> Any:
    """One JSON value read as `hint` describes it (see the module's rules)."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and _admits_none(hint):
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: only X | None unions are supported, not {hint}")
        if not _fits(options[0], value):
            raise FieldError(where, f"{_found(value)}; expected {_expected(hint)}")
        return read_value(options[0], value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise FieldError(where, f"is {value!r}; expected one of {list(typing.get_args(hint))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise FieldError(where, f"{_found(value)}; expected {_expected(hint)}")
        item = typing.get_args(hint)[0]
        items = [read_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(where, f"{_found(value)}; expected {_expected(hint)}")
        item = typing.get_args(hint)[1]
        return {str(k): read_value(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise FieldError(where, f"{_found(value)}; expected true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise FieldError(where, f"{_found(value)}; expected a string")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(where, f"{_found(value)}; expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(where, f"{_found(value)}; expected a number")
        return value if isinstance(value, int) or math.isfinite(value) else None
    raise TypeError(f"{where}: no JSON reading for {hint}")


def _found(value: Any) -> str:
    return f"is {json_type(value)} ({str(value)[:60]!r})"


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(_expected(a) for a in options) + " or null"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "an object"
    return {bool: "true or false", str: "a string", int: "an integer", float: "a number"}.get(
        hint, str(hint)
    )


def _fits(hint: Any, value: Any) -> bool:
    """Whether the value is the JSON kind `hint` reads (its content is checked after)."""
    origin = typing.get_origin(hint)
    if hint is Any or origin is Literal:
        return True
    if origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    if hint in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _admits_none(hint: Any) -> bool:
    return hint is Any or (
        typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)
    )


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a record (its annotations are strings)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]
