"""The dataclass <-> JSON codec of results files (`exfairs.results`): dataclasses field by field
under their field names, enums as their values, ``(name, value)`` pair tuples as JSON objects, NaN
as ``null`` and ±inf as ``"inf"``/``"-inf"``, and a record's token times as compressed
little-endian float64 (``{"f64z": <base64>}``, exact). Decoding follows the declared types and
names the field path of the first value that does not match.

Split from `exfairs.results`, which keeps the document layout and the files.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import types
import typing
import zlib
from enum import Enum
from typing import Any, Literal

import numpy as np

from exfairs.records import PolicySample, RequestRecord


def _encode_float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _encode_times(times: tuple[float, ...]) -> dict[str, str]:
    raw = np.asarray(times, dtype="<f8").view(np.uint8).reshape(-1, 8).T.copy().tobytes()
    return {"f64z": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


#: Field names per dataclass type, filled on first use.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; a results file encodes thousands of
    # dataclass instances of a handful of types.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def encode_value(value: Any) -> Any:
    """`value` (a dataclass, enum, scalar, tuple or (name, value) pair tuple, nested) as
    JSON-ready values by the rules in `exfairs.results`; TypeError for anything else."""
    # Exact built-in scalar types first (the bulk of a document); subclasses (an IntEnum, a NumPy
    # float) fall through to the general checks below, which give the same results as before.
    tp = type(value)
    if tp is float:
        return _encode_float(value)
    if tp is int or tp is str or tp is bool or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        is_record = isinstance(value, RequestRecord)
        is_sample = isinstance(value, PolicySample)
        for name in _field_names(tp):
            v = getattr(value, name)
            if is_record and name == "token_times_s":
                out[name] = _encode_times(v)
            elif is_sample and name == "clients" and v is None:
                continue  # dense sample: written as before sparse samples existed
            else:
                out[name] = encode_value(v)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, tuple):
        if value and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                         for p in value):
            return {k: encode_value(v) for k, v in value}
        return [encode_value(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} in a results file")


class DecodeFailure(Exception):
    """A value that does not match its declared type: `path` is the field path within the
    document (e.g. ``info.seed``), `value` the offending value, `message` what was expected."""

    def __init__(self, path: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.value = value
        self.message = message


def _decode_times(value: Any, path: str) -> tuple[float, ...]:
    if isinstance(value, list):
        return tuple(decode_value(float, v, f"{path}[{i}]") for i, v in enumerate(value))
    if not (isinstance(value, dict) and isinstance(value.get("f64z"), str)):
        raise DecodeFailure(path, value, "expected {\"f64z\": <base64>} or a list of seconds")
    try:
        raw = zlib.decompress(base64.b64decode(value["f64z"], validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise DecodeFailure(path, "<data>", f"corrupt token times: {exc}") from None
    if len(raw) % 8:
        raise DecodeFailure(path, "<data>", "corrupt token times: length is not a multiple of 8")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(8, -1).T.copy().view("<f8").ravel()
    return tuple(float(x) for x in arr)


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def decode_value(tp: Any, value: Any, path: str) -> Any:
    """`value` (parsed JSON) read back as type `tp` (a dataclass, union, Literal, tuple, enum
    or scalar type), the inverse of `encode_value`; DecodeFailure at field path `path` when
    it does not match."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise DecodeFailure(path, value, f"expected an object ({tp.__name__})")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(tp):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name not in value:
                if (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING):
                    raise DecodeFailure(sub, None, "missing")
                continue
            if tp is RequestRecord and f.name == "token_times_s":
                kwargs[f.name] = _decode_times(value[f.name], sub)
            else:
                kwargs[f.name] = decode_value(hints[f.name], value[f.name], sub)
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:
            raise DecodeFailure(path, value, str(exc)) from None
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # Exact JSON types first so that 1 stays an int and true a bool in int | float | bool.
        for a in args:
            if a in (bool, int, str) and type(value) is a:
                return value
        errors: list[str] = []
        for a in args:
            if a is type(None):
                continue
            try:
                return decode_value(a, value, path)
            except DecodeFailure as exc:
                errors.append(exc.message)
        raise DecodeFailure(path, value, "; ".join(errors) or "unexpected value")
    if origin is Literal:
        if value not in args:
            raise DecodeFailure(path, value, f"expected one of {list(args)}")
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            elem = args[0]
            if typing.get_origin(elem) is tuple and len(typing.get_args(elem)) == 2 \
                    and typing.get_args(elem)[0] is str and isinstance(value, dict):
                vt = typing.get_args(elem)[1]
                return tuple((k, decode_value(vt, v, f"{path}.{k}")) for k, v in value.items())
            if not isinstance(value, list):
                raise DecodeFailure(path, value, "expected a list")
            return tuple(decode_value(elem, v, f"{path}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, list) or len(value) != len(args):
            raise DecodeFailure(path, value, f"expected a list of {len(args)} items")
        return tuple(decode_value(a, v, f"{path}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise DecodeFailure(path, value, f"expected one of {[m.value for m in tp]}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise DecodeFailure(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeFailure(path, value, "expected an integer")
        return value
    if tp is float:
        if value is None:
            return math.nan
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return math.nan if value == "nan" else float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeFailure(path, value, "expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise DecodeFailure(path, value, "expected a string")
        return value
    raise DecodeFailure(path, value, f"unsupported type {tp!r}")
