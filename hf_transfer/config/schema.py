"""Turn plain YAML dicts into typed dataclasses, naming the field of every mistake.

Dataclasses are the schema (as in PEFT's configs): each field's type annotation says what the YAML may hold,
`field(metadata={"help": ...})` says what it means, `field(metadata={"range": "[1, inf)"})` bounds every numeric
field (checked here, generically, so no field can be forgotten; NaN and infinity never pass), and `__post_init__`
does the cross-field checks. A dataclass that renamed a key lists it in `RENAMED_KEYS` (old -> new keys): the old
key keeps working for one release, with a warning that names the new one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import types
import typing
from typing import Any, Literal, Union

from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import closest

logger = logging.getLogger(__name__)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of valid values, written as in mathematics: `[1, inf)`, `(0, 1]`, `[0, 0.9)`."""

    low: float | None
    high: float | None
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> Range:
        match = re.fullmatch(r"\s*([\[(])\s*(\S+?)\s*,\s*(\S+?)\s*([\])])\s*", text)
        if not match:
            raise ValueError(f"range {text!r} must look like [1, inf) or (0, 1]")
        left, low, high, right = match.groups()
        return cls(_bound(low), _bound(high), left == "(", right == ")")

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"greater than {low}" if self.low_open else f"at least {low}"
        if self.low is None:
            return f"less than {high}" if self.high_open else f"at most {high}"
        if self.low_open == self.high_open:
            return f"between {low} and {high}" + (", exclusive" if self.low_open else "")
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _bound(text: str) -> float | None:
    return None if text.lstrip("+-") == "inf" else float(text)


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and value.is_integer() else str(value)


def numeric_range(f: dataclasses.Field) -> Range | None:
    """The field's declared range (`metadata["range"]`), or None when it declares none."""
    text = f.metadata.get("range")
    return Range.parse(text) if text else None


def check_range(value: Any, f: dataclasses.Field, where: str, nullable: bool = False) -> None:
    """Refuse a number outside the field's range (a list's every number), and NaN or infinity anywhere."""
    rng = numeric_range(f)
    for number in value if isinstance(value, list) else [value]:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        if rng is None:
            if not math.isfinite(number):
                raise RecipeError(f"{where} must be a finite number, not {number!r}.")
            continue
        if not rng.contains(number):
            null = " (or null)" if nullable else ""
            raise RecipeError(f"{where} must be {rng.describe()}{null}, not {number!r}.")


def coerce(value: Any, tp, where: str):
    """`value` checked (and gently converted: 1 -> 1.0, "3" stays a string) against the annotation `tp`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # `X | None`: X's own message is the most precise
            return coerce(value, options[0], where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where} must be {_type_name(tp)}, not {value!r}.")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool):
            # YAML 1.1 reads an unquoted no/off as false and yes/on as true: `mixed_precision: no` meant the word.
            words = ("no", "off", "false") if not value else ("yes", "on", "true")
            value = next((w for w in words if w in allowed), value)
        if value not in allowed:
            raise RecipeError(
                f"{where} must be one of {', '.join(repr(a) for a in allowed)}, "
                f"not {value!r}{closest(value, allowed)}."
            )
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # `train_files: a.csv` means a list of one
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where} must be {_type_name(tp)}, not {value!r}.")
        return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, not {value!r}.")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(f"{where} must be true or false, not {value!r}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise RecipeError(f"{where} must be an integer, not {value!r}.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads `1e-4` as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise RecipeError(f"{where} must be a number, not {value!r}.")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise RecipeError(f"{where} must be a string, not {value!r}.")
    raise TypeError(f"schema type {tp!r} at {where} is not supported")


def renamed_keys(cls, data: dict, where: str, warn: bool = True) -> dict:
    """`data` with the deprecated keys of `cls` (its `RENAMED_KEYS`, old -> new keys) under their new names.

    Keys are read in order and a later one wins, so a command-line override (appended after the file's keys)
    beats the file whichever name either uses.
    """
    renamed: dict[str, tuple[str, ...]] = getattr(cls, "RENAMED_KEYS", {})
    if not any(key in renamed for key in data):
        return data
    out = {}
    for key, value in data.items():
        for new in renamed.get(key, (key,)):
            out.pop(new, None)
            out[new] = value
        if key in renamed and warn:
            prefix = f"{where}." if where else ""
            logger.warning(
                "%s%s is deprecated and will be removed in the next release; use %s instead.",
                prefix,
                key,
                " and ".join(prefix + new for new in renamed[key]),
            )
    return out


def current_keys(cls, data: Any) -> Any:
    """A dict for dataclass `cls` (nested sections too) with renamed keys under their new names, silently: for
    what an older release recorded (a run folder's recipe), which the user did not write and need not change."""
    if not isinstance(data, dict):
        return data
    data = renamed_keys(cls, data, "", warn=False)
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        options = typing.get_args(hints[key]) if key in hints else ()
        section = next((a for a in (hints.get(key), *options) if dataclasses.is_dataclass(a)), None)
        if section is not None:
            data[key] = current_keys(section, value)
    return data


def build_dataclass(cls, data: Any, where: str):
    """An instance of dataclass `cls` from a dict; unknown keys are errors that suggest the nearest valid key."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping of keys to values, not {data!r}.")
    data = renamed_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise RecipeError(
                f"unknown recipe key '{name}'{closest(key, fields)}; valid keys here are {', '.join(fields)}."
            )
        kwargs[key] = coerce(value, hints[key], name)
        check_range(kwargs[key], fields[key], name, nullable=type(None) in typing.get_args(hints[key]))
    try:
        return cls(**kwargs)
    except RecipeError as err:
        if where and not str(err).startswith(where):
            raise RecipeError(f"{where}.{err}") from None
        raise


def to_dict(obj) -> Any:
    """A dataclass tree as plain dicts and lists (what YAML and JSON hold)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
