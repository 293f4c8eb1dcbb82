"""llmd.http.body: the limits every JSON body and WebSocket message is read within.

At most MAX_DEPTH containers inside each other, integers within int64 (bounds
included), no NaN or Infinity; a violation is a typed 400 naming the field's path.
"""

from __future__ import annotations

import json
import math
from typing import Optional

import pydantic
import pytest

from llmd.errors import InvalidJSONError, ValidationError
from llmd.http.body import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    check_json_value,
    field_name,
    load_json_object,
    parse_model,
    validate_value,
)
from llmd.http.fields import MaxTokens, Seed, StrictModel, Temperature


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    """``depth`` objects inside each other, the outermost included."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def nested_value(depth: int) -> list:
    """``depth`` lists inside each other, built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


class Item(StrictModel):
    temperature: Optional[Temperature] = None
    max_tokens: Optional[MaxTokens] = None
    seed: Optional[Seed] = None


# -- depth ------------------------------------------------------------------------------

def test_max_depth_is_64():
    assert MAX_DEPTH == 64


@pytest.mark.parametrize("text", [objects(MAX_DEPTH), '{"x": ' + arrays(MAX_DEPTH - 1) + "}",
                                  '{"x": [{"y": ' + arrays(MAX_DEPTH - 3) + "}]}"])
def test_depth_exactly_64_passes(text):
    assert isinstance(load_json_object(text), dict)


@pytest.mark.parametrize("text,field", [
    (objects(MAX_DEPTH + 1), "a." * (MAX_DEPTH - 1) + "a"),
    ('{"x": ' + arrays(MAX_DEPTH) + "}", "x" + "[0]" * (MAX_DEPTH - 1)),
    ('{"x": [{"y": ' + arrays(MAX_DEPTH - 2) + "}]}", "x[0].y" + "[0]" * (MAX_DEPTH - 3)),
])
def test_depth_65_fails_naming_the_path(text, field):
    with pytest.raises(ValidationError) as exc:
        load_json_object(text)
    assert exc.value.status == 400
    assert exc.value.field == field.rstrip(".")
    assert f"nested more than {MAX_DEPTH} levels deep" in exc.value.message


@pytest.mark.parametrize("text", ['{"x": ' + arrays(5000) + "}", arrays(5000), objects(5000),
                                  '{"x": ' + arrays(100_000) + "}"])
def test_hostile_depth_is_a_400_not_a_recursion_error(text):
    with pytest.raises(ValidationError) as exc:
        load_json_object(text)
    assert exc.value.status == 400 and exc.value.field == "body"
    assert "nested more than" in exc.value.message


def test_check_json_value_is_iterative():
    """A parsed value nested far past the interpreter's recursion limit is refused, not a crash."""
    with pytest.raises(ValidationError) as exc:
        check_json_value({"x": nested_value(50_000)})
    assert exc.value.field == "x" + "[0]" * (MAX_DEPTH - 1)
    check_json_value({"x": nested_value(MAX_DEPTH - 1)})  # 64 in all: fine


def test_depth_counts_from_the_prefix_of_a_batch_item():
    with pytest.raises(ValidationError) as exc:
        validate_value(Item, {"x": nested_value(MAX_DEPTH)}, "requests[3]")
    assert exc.value.field == "requests[3].x" + "[0]" * (MAX_DEPTH - 1)


def test_the_what_and_field_of_a_websocket_message():
    with pytest.raises(ValidationError) as exc:
        load_json_object(arrays(5000), what="the message", field="message")
    assert exc.value.field == "message" and exc.value.message.startswith("the message ")
    with pytest.raises(InvalidJSONError) as exc2:
        load_json_object("[1]", what="the message", field="message")
    assert exc2.value.field == "message"


# -- integers ----------------------------------------------------------------------------

def test_int64_bounds_are_inclusive():
    assert (INT64_MIN, INT64_MAX) == (-(2**63), 2**63 - 1)
    data = load_json_object(json.dumps({"hi": INT64_MAX, "lo": INT64_MIN}))
    assert data == {"hi": INT64_MAX, "lo": INT64_MIN}
    for value in (INT64_MAX + 1, INT64_MIN - 1, 2**70, -(2**70), 10**400):
        with pytest.raises(ValidationError) as exc:
            load_json_object(json.dumps({"n": value}))
        assert exc.value.field == "n" and "64 bits" in exc.value.message


def test_seed_keeps_the_whole_int64_range():
    for seed in (INT64_MIN, -1, 0, INT64_MAX):
        assert parse_model(Item, json.dumps({"seed": seed})).seed == seed
    with pytest.raises(ValidationError) as exc:
        parse_model(Item, json.dumps({"seed": 2**70}))
    assert exc.value.field == "seed"


def test_bool_is_not_an_int():
    # bool is an int subclass in Python: True must neither trip the int check nor pass as an int
    check_json_value({"a": True, "b": False, "c": [True]})
    with pytest.raises(ValidationError) as exc:
        validate_value(Item, {"max_tokens": True}, "requests[0]")
    assert exc.value.field == "requests[0].max_tokens"
    with pytest.raises(ValidationError) as exc:
        parse_model(Item, '{"temperature": true}')
    assert exc.value.field == "temperature"


# -- non-finite numbers -------------------------------------------------------------------

@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_by_name(token):
    with pytest.raises(ValidationError) as exc:
        load_json_object('{"messages": [{"role": "user", "content": ' + token + "}]}")
    assert exc.value.status == 400 and exc.value.field == "messages[0].content"
    assert "finite" in exc.value.message and "less than" not in exc.value.message


def test_nan_temperature_is_not_a_range_error():
    """The tracker's case: NaN was refused with a message about the upper bound."""
    with pytest.raises(ValidationError) as exc:
        parse_model(Item, '{"temperature": NaN}')
    assert exc.value.field == "temperature"
    assert "finite" in exc.value.message and "less than" not in exc.value.message


def test_strict_model_refuses_nan_given_as_a_python_value():
    """Even past the parser (a value built in Python), StrictModel itself refuses NaN and Infinity."""
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError) as exc:
            check_json_value({"temperature": value})
        assert exc.value.field == "temperature"
        with pytest.raises(pydantic.ValidationError):
            Item.model_validate({"temperature": value})


def test_finite_floats_and_large_finite_exponents_pass():
    data = load_json_object('{"a": 1e308, "b": -1.5e-300, "c": 0.0, "d": -0.0}')
    assert data["a"] == 1e308


# -- field paths -------------------------------------------------------------------------

@pytest.mark.parametrize("loc,name", [
    (("messages", 0, "content"), "messages[0].content"),
    (("requests", 2, "parameters", "temperature"), "requests[2].parameters.temperature"),
    (("x", 0, 1, 2), "x[0][1][2]"),
    ((), "body"),
    ((3,), "[3]"),
])
def test_field_name(loc, name):
    assert field_name(loc) == name


def test_paths_through_objects_and_arrays():
    value = {"messages": [{"role": "user"}, {"content": [{"text": "ok"}, {"n": 2**64}]}]}
    with pytest.raises(ValidationError) as exc:
        check_json_value(value)
    assert exc.value.field == "messages[1].content[1].n"
    with pytest.raises(ValidationError) as exc:
        check_json_value(value, "requests[0]")
    assert exc.value.field == "requests[0].messages[1].content[1].n"


def test_validate_value_names_the_prefixed_field():
    with pytest.raises(ValidationError) as exc:
        validate_value(Item, {"temperature": 3.0}, "requests[1]")
    assert exc.value.field == "requests[1].temperature"
    with pytest.raises(ValidationError) as exc:
        validate_value(Item, {"temperature": math.nan}, "requests[1]")
    assert exc.value.field == "requests[1].temperature" and "finite" in exc.value.message
    with pytest.raises(ValidationError) as exc:
        validate_value(Item, ["not", "an", "object"], "requests[1]")
    assert exc.value.field == "requests[1]"
    assert validate_value(Item, {"max_tokens": 5}, "requests[0]").max_tokens == 5


# -- what is not a JSON object ----------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"not json", b'{"a": ', b"[1, 2]", b'"x"', b"null", b"", b'{"a": "\xff"}'])
def test_not_a_json_object_is_invalid_json(raw):
    with pytest.raises(InvalidJSONError) as exc:
        load_json_object(raw)
    assert exc.value.status == 400 and exc.value.field == "body"
