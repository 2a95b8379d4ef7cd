"""gpumarket.actions.render: exact amounts, parsing what people type, tables and times."""

from __future__ import annotations

import pytest

from gpumarket.actions import render


def test_amounts_are_exact():
    assert render.amount(0, 18, "X") == "0 X"
    assert render.amount(1_234_500 * 10**15, 18, "X") == "1,234.5 X"
    assert render.amount(1, 18) == "0.000000000000000001"
    assert render.amount(-15, 1) == "-1.5"
    assert render.amount(10**30) == f"{10**30:,}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1500", 1500),
        ("1_500", 1500),
        ("1,500", 1500),
        ("2 tokens", 2 * 10**18),
        ("1.5tokens", 15 * 10**17),
        ("1 token", 10**18),
        ("0.000000000000000001 tokens", 1),
    ],
)
def test_parse_amount(text, expected):
    assert render.parse_amount(text, 18) == expected


@pytest.mark.parametrize("text", ["1.5", "abc", "-3", "0.0000000000000000001 tokens", ""])
def test_parse_amount_refuses(text):
    with pytest.raises(ValueError):
        render.parse_amount(text, 18)


def test_table_aligns_numbers_right_and_text_left():
    text = render.table(["name", "n"], [["a", 5], ["bbb", 1234]])
    assert text.splitlines() == ["name     n", "----  ----", "a        5", "bbb   1234"]
    assert render.table(["x"], []) == "(none)"


def test_times_and_durations():
    assert render.duration(59) == "59 s"
    assert render.duration(3600 + 60) == "1 h 1 min"
    assert render.duration(2 * 86_400 + 3600 * 4) == "2 d 4 h"
    assert render.utc(0) == "1970-01-01 00:00:00 UTC"
    assert render.when(100, 40) == "1970-01-01 00:01:40 UTC (in 1 min)"
    assert render.when(40, 100).endswith("(1 min ago)")
    assert render.when(0, 100) == "-"
