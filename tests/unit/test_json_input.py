"""JSON from outside: exact numbers, bounded nesting, one kind of error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from storepulse.json_input import JsonInputError, exceeds_depth, loads


def test_numbers_are_exact() -> None:
    assert loads('{"price": 19.99, "n": 3}') == {"price": Decimal("19.99"), "n": 3}


@pytest.mark.parametrize(
    ("text", "deeper_than_two"),
    [
        ("[[1]]", False),
        ("[[[1]]]", True),
        ('{"a": {"b": {}}}', True),
        ('["[[[[", "{{{{"]', False),  # brackets inside strings do not count
        (r'["\"[[[[", 1]', False),  # nor after an escaped quote
        ("]]]][[", False),  # unbalanced: json.loads reports it
    ],
)
def test_depth_ignores_strings(text: str, deeper_than_two: bool) -> None:
    assert exceeds_depth(text, 2) is deeper_than_two


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, "nested deeper than 32 levels"),
        ("{", "not valid JSON: Expecting property name"),
        (b"\xff", "not valid JSON: 'utf-8' codec can't decode"),
        ("1" * 5000, "not valid JSON: Exceeds the limit"),
    ],
)
def test_bad_input_is_one_error_with_a_message(text: str | bytes, message: str) -> None:
    with pytest.raises(JsonInputError) as caught:
        loads(text)
    assert str(caught.value).startswith(message)
