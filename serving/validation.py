"""Turn query strings and JSON bodies into feature rows, or an APIError naming field and problem."""

import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import numpy as np

from serving.config import FEATURES, MAX_FEATURE_VALUE
from serving.errors import APIError

_FEATURE_SET = frozenset(FEATURES)
_NUMBER_TYPES = (float, int)  # exact types: bool, a subclass of int, is not a number here
_EXPECTED = ", ".join(FEATURES)
# A plain decimal number as a query value: 12345, 25.5, .5, 1e9, +3 (no nan, inf, 1_000, 0x10).
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAN_WORDS = frozenset({"nan", "+nan", "-nan"})
_INF_WORDS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def check_value(field: str, value: float) -> float:
    """Return ``value`` if it is a finite, non-negative number no larger than the maximum."""
    if math.isnan(value):
        raise APIError(f"{field}: NaN is not allowed; expected a finite number >= 0")
    if math.isinf(value):
        raise APIError(f"{field}: must be finite, got {value}")
    if value < 0:
        raise APIError(f"{field}: must not be negative, got {value:g}")
    if value > MAX_FEATURE_VALUE:
        raise APIError(f"{field}: must be at most {MAX_FEATURE_VALUE:g}, got {value:g}")
    return value


def number_from_text(field: str, text: str) -> float:
    """Parse one query-string value (a plain decimal number) and check it."""
    if not text.strip():
        raise APIError(f"{field}: empty; expected a number")
    if not _DECIMAL.fullmatch(text):
        word = text.strip().lower()
        if word in _NAN_WORDS:
            raise APIError(f"{field}: NaN is not allowed; expected a finite number >= 0")
        if word in _INF_WORDS:
            raise APIError(f"{field}: must be finite, got {text[:40]!r}")
        raise APIError(f"{field}: not a number: {text[:40]!r}")
    return check_value(field, float(text))


def number_from_json(field: str, value: Any) -> float:
    """Check one JSON value: a number (not a string, boolean or null) in range."""
    if type(value) is float:
        return check_value(field, value)
    if type(value) is int:  # compared as an int: 10**400 has no float
        if value < 0:
            raise APIError(f"{field}: must not be negative")
        if value > MAX_FEATURE_VALUE:
            raise APIError(f"{field}: must be at most {MAX_FEATURE_VALUE:g}")
        return float(value)
    raise APIError(f"{field}: expected a number, got {_json_type(value)}")


def parse_query_string(raw: bytes) -> dict[str, list[str]]:
    """Split a raw query string into names and their values, as ``request.args`` would.

    ``GET /predict`` is the hot path; this is a third of the cost of building
    ``request.args`` (a MultiDict) for the same result.
    """
    params: dict[str, list[str]] = {}
    for part in raw.decode("utf-8", "replace").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        params.setdefault(name, []).append(value)
    return params


def row_from_query(params: Mapping[str, list[str]]) -> tuple[float, ...]:
    """The feature row of ``GET /predict``'s query parameters (see :func:`parse_query_string`)."""
    if params.keys() != _FEATURE_SET:
        _check_fields(params.keys(), prefix="")  # raises, naming the unknown or missing field
    row = []
    for name in FEATURES:
        values = params[name]
        if len(values) > 1:
            raise APIError(f"{name}: given {len(values)} times; give it once")
        text = values[0]
        if _DECIMAL.fullmatch(text):
            value = float(text)
            if 0.0 <= value <= MAX_FEATURE_VALUE:  # False for NaN and inf too
                row.append(value)
                continue
        row.append(number_from_text(name, text))  # raises, naming the problem
    return tuple(row)


def row_from_object(obj: Any, prefix: str = "") -> tuple[float, ...]:
    """The feature row of one JSON instance ``{"vol_moving_avg": .., "adj_close_rolling_med": ..}``.

    Args:
        obj: The parsed JSON value.
        prefix: Where ``obj`` is in the body, for messages (``"instances[3]."``).
    """
    if type(obj) is not dict:
        where = prefix.rstrip(".") or "body"
        raise APIError(f"{where}: expected an object with {_EXPECTED}, got {_json_type(obj)}")
    _check_fields(obj.keys(), prefix)
    return tuple(number_from_json(prefix + name, obj[name]) for name in FEATURES)


def rows_from_instances(instances: Any, max_instances: int) -> np.ndarray:
    """The ``(n, 2)`` feature array of a batch's ``instances``; checks every instance."""
    if type(instances) is not list:
        raise APIError(f"instances: expected an array of objects, got {_json_type(instances)}")
    if not instances:
        raise APIError(f"instances: empty; expected 1 to {max_instances} objects")
    if len(instances) > max_instances:
        raise APIError(
            f"instances: too many ({len(instances)}); at most {max_instances} per request"
        )
    # Fast pass: shape and types in plain Python, ranges with numpy; any failure is
    # re-checked instance by instance to name the first bad one precisely.
    rows = []
    first, second = FEATURES
    for index, obj in enumerate(instances):
        if type(obj) is not dict or obj.keys() != _FEATURE_SET:
            row_from_object(obj, f"instances[{index}].")
        a, b = obj[first], obj[second]
        if type(a) not in _NUMBER_TYPES or type(b) not in _NUMBER_TYPES:
            row_from_object(obj, f"instances[{index}].")
        rows.append((a, b))
    try:
        array = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        array = None
    if array is None or not _in_range(array).all():
        for index, obj in enumerate(instances):
            row_from_object(obj, f"instances[{index}].")
    return array


def parse_json_body(raw: bytes) -> Any:
    """Parse a request body as JSON."""
    if not raw.strip():
        raise APIError("body: empty; expected a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise APIError("body: not valid JSON") from None


def _in_range(array: np.ndarray) -> np.ndarray:
    return (np.isfinite(array) & (array >= 0) & (array <= MAX_FEATURE_VALUE)).all(axis=1)


def _check_fields(present: Any, prefix: str) -> None:
    for name in present:
        if name not in _FEATURE_SET:
            raise APIError(f"{prefix}{name[:40]}: unknown field; expected {_EXPECTED}")
    for name in FEATURES:
        if name not in present:
            raise APIError(f"{prefix}{name}: missing")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"
