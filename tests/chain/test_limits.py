"""gpumarket.chain.limits equals the contracts: each limit is read out of contracts/modules/*.vy
(`NAME: constant(uint...) = expr`) and compared, so a limit changed on one side fails here, on
the CPU, before any chain test runs. The same goes for PARAMETER_BOUNDS (governance.vy's setters)
and the few contract constants mirrored outside limits.py."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gpumarket.chain import arithmetic, limits
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.oracle import challenge

MODULES = Path(__file__).resolve().parents[2] / "contracts" / "modules"

# Python name -> (contract module, its constant).
LIMITS: dict[str, tuple[str, str]] = {
    "MAX_GPUS": ("registry.vy", "MAX_GPUS"),
    "MAX_PRICE": ("registry.vy", "MAX_PRICE"),
    "MAX_ENDPOINT_BYTES": ("registry.vy", "MAX_ENDPOINT_LENGTH"),
    "MAX_STAKE": ("staking.vy", "LOW_128"),
    "MAX_JOB_DURATION": ("governance.vy", "MAX_JOB_DURATION"),
    "MAX_ACCEPT_WINDOW": ("escrow.vy", "MAX_ACCEPT_WINDOW"),
    "MAX_MEMBERS": ("committee.vy", "MAX_MEMBERS"),
    "MAX_AMOUNT": ("governance.vy", "MAX_AMOUNT"),
    "MAX_COLLATERAL_RATE": ("governance.vy", "MAX_COLLATERAL_RATE"),
    "MIN_UNBONDING_PERIOD": ("governance.vy", "MIN_UNBONDING_PERIOD"),
    "MAX_UNBONDING_PERIOD": ("governance.vy", "MAX_UNBONDING_PERIOD"),
    "MIN_COLLATERAL_BPS": ("governance.vy", "MIN_COLLATERAL_BPS"),
    "MAX_PROTOCOL_FEE_BPS": ("governance.vy", "MAX_PROTOCOL_FEE_BPS"),
    "MAX_SPOOF_SLASH_BPS": ("governance.vy", "MAX_SPOOF_SLASH_BPS"),
    "MIN_SETTLE_GRACE": ("governance.vy", "MIN_SETTLE_GRACE"),
    "MAX_SETTLE_GRACE": ("governance.vy", "MAX_SETTLE_GRACE"),
    "MIN_HARDWARE_VALIDITY": ("governance.vy", "MIN_HARDWARE_VALIDITY"),
    "MAX_HARDWARE_VALIDITY": ("governance.vy", "MAX_HARDWARE_VALIDITY"),
    "MAX_JAIL_AFTER_FAILURES": ("governance.vy", "MAX_JAIL_AFTER_FAILURES"),
}

# Contract constants mirrored elsewhere (scales and rules rather than limits): value, module, constant.
OTHER_MIRRORS: dict[str, tuple[int, str, str]] = {
    "gpumarket.chain.arithmetic.BPS": (arithmetic.BPS, "governance.vy", "BPS"),
    "gpumarket.chain.arithmetic.RATE_SCALE": (arithmetic.RATE_SCALE, "governance.vy", "RATE_SCALE"),
    "gpumarket.oracle.challenge.SPOOF_THRESHOLD_BPS": (
        challenge.SPOOF_THRESHOLD_BPS,
        "verification.vy",
        "SPOOF_THRESHOLD_BPS",
    ),
}

_CONSTANT = re.compile(r"^([A-Z][A-Z0-9_]*): constant\(u?int\d+\) = (.+?)\s*(?:#.*)?$", re.MULTILINE)
_OPERATORS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Pow: operator.pow,
}


def evaluate(expression: str, names: dict[str, int] | None = None) -> int:
    """An integer expression as Vyper writes constants: literals (`_` separators too), + - * **,
    and (given `names`) other constants; anything else is refused, never run."""

    def value(node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Name) and names is not None and node.id in names:
            return names[node.id]
        raise ValueError(f"not a constant integer expression: {ast.unparse(node)!r} in {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def vyper_constants(module: str) -> dict[str, int]:
    """Every integer constant of contracts/modules/<module>, name -> value."""
    return {name: evaluate(expression) for name, expression in _CONSTANT.findall((MODULES / module).read_text())}


def test_the_parser_reads_what_the_contracts_write() -> None:
    assert evaluate("30 * 86_400") == 2_592_000
    assert evaluate("2**96 - 1") == 79_228_162_514_264_337_593_543_950_335
    with pytest.raises(ValueError, match="not a constant"):
        evaluate("__import__('os').getpid()")
    assert vyper_constants("registry.vy")["MAX_PRICE"] == 2**96 - 1


def test_every_limit_is_mapped_to_a_vyper_constant() -> None:
    public = {name for name in vars(limits) if name.isupper() and not name.startswith("_")}
    assert public == set(limits.__all__)
    assert set(limits.__all__) == set(LIMITS), "map each limit to its contract constant in LIMITS"


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_each_limit_equals_its_vyper_constant(name: str) -> None:
    module, constant = LIMITS[name]
    constants = vyper_constants(module)
    assert constant in constants, f"{module} has no integer constant {constant}"
    assert getattr(limits, name) == constants[constant], f"limits.{name} != {module} {constant}"


def test_each_limits_comment_names_its_constant() -> None:
    comments = dict(re.findall(r"^([A-Z][A-Z0-9_]*): Final = .*?  # (.*)$", Path(limits.__file__).read_text(), re.M))
    for name, (module, constant) in LIMITS.items():
        assert comments.get(name, "").startswith(f"{module} {constant}"), (name, comments.get(name))


@pytest.mark.parametrize("mirror", sorted(OTHER_MIRRORS))
def test_other_mirrors_equal_their_vyper_constant(mirror: str) -> None:
    value, module, constant = OTHER_MIRRORS[mirror]
    assert value == vyper_constants(module)[constant], f"{mirror} != {module} {constant}"


def test_parameter_bounds_are_the_setters_bounds() -> None:
    source = (MODULES / "governance.vy").read_text()
    setters = dict(
        re.findall(
            r"def set_(\w+)\(new_value: uint256\):(?:(?!\ndef ).)*?"
            r"self\._check_and_log_change\(\"\1\", self\.\1, new_value, ([^)]*)\)",
            source,
            re.S,
        )
    )
    assert set(setters) == set(PARAMETER_BOUNDS), "every bounded setter has its PARAMETER_BOUNDS row"
    constants = vyper_constants("governance.vy")
    for name, arguments in setters.items():
        lower, upper = (evaluate(argument.strip(), constants) for argument in arguments.split(","))
        assert PARAMETER_BOUNDS[name] == (lower, upper), name
