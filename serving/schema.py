"""What a valid request is, stated once: pydantic types that validate requests and whose JSON
Schema ``/openapi.json`` serves.

The request bodies are ``TypedDict``s rather than ``BaseModel``s: validating one returns the
JSON object itself, which is all the predictor needs, without building an object per instance
of a batch. A validation error becomes a 400 naming the field and the problem (:func:`_message`).
"""

import functools
import json
import math
import operator
import re
from typing import Annotated, Any
from urllib.parse import unquote_plus

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from etf_assets.constants import FEATURE_COLUMNS
from serving.errors import APIError

#: The two inputs of the model, in the order the model was fitted on.
FEATURES: tuple[str, ...] = tuple(FEATURE_COLUMNS)

#: Largest accepted feature value: about 100,000 times the largest real daily volume.
MAX_FEATURE_VALUE = 1e15

#: A feature value: a JSON number (not a string, boolean or null), finite, from 0 to the maximum.
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_FEATURE_VALUE)]

_OBJECT = ConfigDict(strict=True, extra="forbid")


@with_config(_OBJECT)
class Instance(TypedDict):
    """The features of one prediction."""

    vol_moving_avg: Annotated[
        Feature,
        Field(description="Mean daily volume over the 30 most recent trading days (shares)."),
    ]
    adj_close_rolling_med: Annotated[
        Feature,
        Field(description="Median adjusted close over the 30 most recent trading days."),
    ]


@functools.cache
def batch_adapter(max_instances: int) -> TypeAdapter:
    """The validator of ``{"instances": [...]}`` for an app taking at most ``max_instances``."""

    @with_config(_OBJECT)
    class Batch(TypedDict):
        """The features of many predictions, made in one request."""

        instances: Annotated[list[Instance], Field(min_length=1, max_length=max_instances)]

    return TypeAdapter(Batch)


_INSTANCE = TypeAdapter(Instance)
_ROW = operator.itemgetter(*FEATURES)
_EXPECTED = ", ".join(FEATURES)


def request_schemas(max_instances: int) -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the request bodies, by name, referring to each other as OpenAPI
    components (``#/components/schemas/Instance``)."""
    batch = batch_adapter(max_instances).json_schema(ref_template="#/components/schemas/{model}")
    definitions = batch.pop("$defs")
    return {**definitions, batch["title"]: batch}


# --- query strings ------------------------------------------------------------------------

# A plain decimal number as a query value: 12345, 25.5, .5, 1e9, +3 (no 1_000, 0x10, 12,345);
# NaN and infinity are parsed too, so that the schema refuses them by name.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE_WORDS = frozenset(
    f"{sign}{word}" for sign in ("", "+", "-") for word in ("nan", "inf", "infinity")
)


def row_from_query(raw: bytes) -> tuple[float, ...]:
    """The feature row of ``GET /predict``'s raw query string.

    Each value is parsed to a float, then the row is validated as an :class:`Instance`.
    """
    values: dict[str, Any] = {}
    for name, texts in _parse_query_string(raw).items():
        if name not in FEATURES:
            values[name] = texts[0]  # refused by the schema as an unknown field
        elif len(texts) > 1:
            raise APIError(f"{name}: given {len(texts)} times; give it once")
        else:
            values[name] = _number(name, texts[0])
    return _ROW(_validate(_INSTANCE, values))


def _parse_query_string(raw: bytes) -> dict[str, list[str]]:
    """Split a raw query string into names and their values, as ``request.args`` would.

    ``GET /predict`` is the hot path, and this is cheaper than building ``request.args``
    (a MultiDict) for the same result.
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


def _number(name: str, text: str) -> float:
    if _DECIMAL.fullmatch(text) or text.strip().lower() in _NON_FINITE_WORDS:
        return float(text)
    if not text.strip():
        raise APIError(f"{name}: empty; expected a number")
    raise APIError(f"{name}: not a number: {text[:40]!r}")


# --- JSON bodies --------------------------------------------------------------------------


def parse_json_body(raw: bytes) -> Any:
    """Parse a request body as JSON (NaN, Infinity and big integers included, so that the
    schema refuses them by name)."""
    if not raw.strip():
        raise APIError("body: empty; expected a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise APIError("body: not valid JSON") from None


def is_batch(body: Any) -> bool:
    """Whether a parsed body asks for a batch (``{"instances": ...}``) or one instance."""
    return type(body) is dict and "instances" in body


def row_from_instance(body: Any) -> tuple[float, ...]:
    """The feature row of one JSON instance, validated as an :class:`Instance`."""
    return _ROW(_validate(_INSTANCE, body))


def rows_from_batch(body: Any, max_instances: int) -> np.ndarray:
    """The ``(n, 2)`` feature array of a batch body, validated as a whole."""
    batch = _validate(batch_adapter(max_instances), body, max_instances)
    return np.array(list(map(_ROW, batch["instances"])), dtype=np.float64)


# --- errors -------------------------------------------------------------------------------


def _validate(adapter: TypeAdapter, data: Any, max_instances: int | None = None) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise APIError(_message(exc.errors(include_url=False), max_instances)) from None


def _message(errors: list[ErrorDetails], max_instances: int | None) -> str:
    """``"<where>: <problem>"`` for the first error (``max_instances``: the body is a batch)."""
    error = _first(errors)
    kind, loc, value = error["type"], error["loc"], error["input"]
    ctx = error.get("ctx", {})
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p[:40]}" for p in loc)[1:] or "body"
    if kind == "float_type" and type(value) is int:  # an integer beyond what a float holds
        kind = "greater_than_equal" if value < 0 else "less_than_equal"
        ctx, value = {"le": MAX_FEATURE_VALUE}, None
    if kind == "missing":
        problem = "missing"
    elif kind == "extra_forbidden":
        in_batch = max_instances is not None and len(loc) == 1
        problem = "unknown field; " + (
            "a batch body has only instances" if in_batch else f"expected {_EXPECTED}"
        )
    elif kind == "float_type":
        problem = f"expected a number, got {_json_type(value)}"
    elif kind == "finite_number" and math.isnan(value):
        problem = "NaN is not allowed; expected a finite number >= 0"
    elif kind == "finite_number":
        problem = f"must be finite, got {value}"
    elif kind == "greater_than_equal":
        problem = "must not be negative" + _got(value)
    elif kind == "less_than_equal":
        problem = f"must be at most {ctx['le']:g}" + _got(value)
    elif kind == "dict_type":
        problem = f"expected an object with {_EXPECTED}, got {_json_type(value)}"
    elif kind == "list_type":
        problem = f"expected an array of objects, got {_json_type(value)}"
    elif kind == "too_short":
        problem = f"empty; expected {ctx['min_length']} to {max_instances} objects"
    elif kind == "too_long":
        problem = f"too many ({len(value)}); at most {ctx['max_length']} per request"
    else:
        problem = error["msg"]
    return f"{where}: {problem}"


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    """The first error, unless its object also has an unknown field: that one comes first, as
    it is usually a misspelling of the field reported missing."""
    parent = errors[0]["loc"][:-1]
    for error in errors:
        if error["type"] == "extra_forbidden" and error["loc"][:-1] == parent:
            return error
    return errors[0]


def _got(value: Any) -> str:
    return "" if value is None else f", got {value:g}"


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
