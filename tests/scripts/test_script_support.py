"""scripts/_support.py: the progress of a long wait, and amounts and classes as people type them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click
import pytest

from gpumarket.measure.classes import class_by_name


def _load_support():
    # By path: under pytest, `scripts` is this test folder (tests/scripts), not the project's.
    path = Path(__file__).resolve().parents[2] / "scripts" / "_support.py"
    spec = importlib.util.spec_from_file_location("ape_scripts_support", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_support = _load_support()


@pytest.mark.parametrize("text, expected", [("1", 1), (" 7 ", 7), ("cpu-dev", class_by_name("cpu-dev").id)])
def test_a_gpu_class_is_an_id_or_a_name(text, expected):
    assert _support.parse_gpu_class(text) == expected


def test_an_unknown_class_name_is_a_usage_error():
    with pytest.raises(click.BadParameter, match="'no-such-gpu' is neither a class id nor a known class name"):
        _support.parse_gpu_class("no-such-gpu")
