"""Deployment parameters: the YAML schema, its validation, and where the file is found.

Everything here is checked before a single transaction is sent: a typo in a parameter
name, a value outside the contract's bounds, a committee without a majority threshold or
a mock token on a public network all stop the deployment with a message that names the
file and the field. Pure Python, no chain access: `gpumarket.chain.market_deploy` adds the
checks that need the chain (token code, the network's kind).

Amounts are integers in token base units and durations are seconds; YAML integers may
use underscores (``1_000_000_000_000_000_000_000``). Addresses MUST be quoted: YAML reads
an unquoted ``0x...`` as a number and the leading zeros (and checksum) would be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from gpumarket.chain.arithmetic import BPS
from gpumarket.chain.limits import (
    MAX_AMOUNT,
    MAX_COLLATERAL_RATE,
    MAX_HARDWARE_VALIDITY,
    MAX_JAIL_AFTER_FAILURES,
    MAX_MEMBERS,
    MAX_PROTOCOL_FEE_BPS,
    MAX_SETTLE_GRACE,
    MAX_SPOOF_SLASH_BPS,
    MAX_UNBONDING_PERIOD,
    MIN_COLLATERAL_BPS,
    MIN_HARDWARE_VALIDITY,
    MIN_SETTLE_GRACE,
    MIN_UNBONDING_PERIOD,
)
from gpumarket.testing.committee import is_test_oracle

__all__ = [
    "DEFAULT_PARAMS_NAME",
    "DEPLOYER",
    "MOCK",
    "PARAMETER_BOUNDS",
    "CommitteeParams",
    "DeployParams",
    "GpuClassParams",
    "ParamsError",
    "TimelockParams",
    "check_for_network",
    "load_params",
    "params_path_for",
    "parse_params",
]

# Symbolic values the YAML may use instead of an address.
MOCK = "mock"  # deploy a MockToken (open mint): local networks only
DEPLOYER = "deployer"  # the account that sends the deployment

DEFAULT_PARAMS_NAME = "default.yaml"
# Timelock.vy takes at most 255 accounts per role; a delay beyond 30 days would freeze governance.
MAX_ROLE_ACCOUNTS = 255
MAX_TIMELOCK_DELAY = 30 * 86_400
MAX_CONFIRMATIONS = 64
# governance.vy's unbonding period when the parameters file leaves it out.
DEFAULT_UNBONDING_PERIOD = 7 * 86_400

# Each bounded setter's (lower, upper), as governance.vy's set_<name> checks them (the limits
# are gpumarket.chain.limits'); tests/scripts/test_parameter_bounds.py checks each against a
# deployed contract.
PARAMETER_BOUNDS: dict[str, tuple[int, int]] = {
    "min_stake": (1, MAX_AMOUNT),
    "unbonding_period": (MIN_UNBONDING_PERIOD, MAX_UNBONDING_PERIOD),
    "collateral_bps": (MIN_COLLATERAL_BPS, BPS),
    "collateral_rate": (1, MAX_COLLATERAL_RATE),
    "slash_bps": (1, BPS),
    "client_share_bps": (0, BPS),
    "protocol_fee_bps": (0, MAX_PROTOCOL_FEE_BPS),
    "spoof_slash_bps": (0, MAX_SPOOF_SLASH_BPS),
    "settle_grace": (MIN_SETTLE_GRACE, MAX_SETTLE_GRACE),
    "hardware_validity": (MIN_HARDWARE_VALIDITY, MAX_HARDWARE_VALIDITY),
    "jail_after_failures": (1, MAX_JAIL_AFTER_FAILURES),
}


class ParamsError(ValueError):
    """The parameters are invalid; the message lists every problem, one per line."""


def _checksummed(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("an address must be a quoted string: YAML reads an unquoted 0x... as a number")
    if not isinstance(value, str):
        raise ValueError(f"expected a quoted 0x-prefixed address, got {type(value).__name__}")
    if not value.startswith("0x") or not is_hex_address(value):
        raise ValueError(f"{value!r} is not a 20-byte 0x-prefixed hex address")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError(f"{value!r} has mixed case but an invalid EIP-55 checksum")
    address = to_checksum_address(value)
    if int(address, 16) == 0:
        raise ValueError("the zero address is not allowed")
    return address


def _address_or(*symbols: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, str) and value.lower() in symbols:
            return value.lower()
        try:
            return _checksummed(value)
        except ValueError as error:
            allowed = " or ".join(repr(s) for s in symbols)
            raise ValueError(f"{error} (or use {allowed})" if symbols else str(error)) from None

    return check


Address = Annotated[str, BeforeValidator(_checksummed)]
TokenRef = Annotated[str, BeforeValidator(_address_or(MOCK))]
TreasuryRef = Annotated[str, BeforeValidator(_address_or(DEPLOYER))]
StrictInt = Annotated[int, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuClassParams(_Strict):
    """One row of the class table: `set_gpu_class(id, floor_per_gpu_gops)`."""

    id: StrictInt = Field(ge=1, le=2**16 - 1)
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")
    floor_per_gpu_gops: StrictInt = Field(ge=1, le=MAX_AMOUNT)


class CommitteeParams(_Strict):
    """The first oracle committee (epoch 1)."""

    members: list[Address] = Field(min_length=1, max_length=MAX_MEMBERS)
    threshold: StrictInt = Field(ge=1)

    @model_validator(mode="after")
    def _check(self) -> CommitteeParams:
        seen: set[str] = set()
        for member in self.members:
            if member in seen:
                raise ValueError(f"duplicate member {member}")
            seen.add(member)
        count = len(self.members)
        if self.threshold > count:
            raise ValueError(f"threshold {self.threshold} is above the member count {count}")
        if self.threshold * 2 <= count:
            raise ValueError(f"threshold {self.threshold} of {count} is not a strict majority (needs > {count // 2})")
        return self


class OracleBondsParams(_Strict):
    """The committee's bonds (the OracleBonds companion): what a member must hold before it can be
    named in a committee, and how long a member that left waits to withdraw (1 to 90 days)."""

    bond_amount: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)
    withdrawal_delay: StrictInt = Field(default=7 * 86_400, ge=86_400, le=90 * 86_400)


class TimelockParams(_Strict):
    """The market's owner on a public network (contracts/Timelock.vy): who may schedule changes,
    who may execute them once ``min_delay`` seconds have passed, and who may pause at once.
    An executor of 0x0000...0000 lets anyone execute a ready operation."""

    min_delay: StrictInt = Field(ge=1, le=MAX_TIMELOCK_DELAY)
    proposers: list[Address] = Field(min_length=1, max_length=MAX_ROLE_ACCOUNTS)
    executors: list[Address] = Field(min_length=1, max_length=MAX_ROLE_ACCOUNTS)
    guardians: list[Address] = Field(default_factory=list, max_length=MAX_ROLE_ACCOUNTS)


def _bounded(lower: int, upper: int) -> Any:
    return (StrictInt | None, Field(default=None, ge=lower, le=upper))


# One optional field per bounded setter; a field left out keeps the contract's default.
if TYPE_CHECKING:

    class ParameterOverrides(_Strict):
        # mypy cannot see the fields of the model built at run time below: each is an int or None.
        def __getattr__(self, name: str) -> int | None: ...

else:
    ParameterOverrides = create_model(
        "ParameterOverrides",
        __base__=_Strict,
        **{name: _bounded(lower, upper) for name, (lower, upper) in PARAMETER_BOUNDS.items()},
    )


def _unique_classes(classes: list[GpuClassParams]) -> list[GpuClassParams]:
    for attribute in ("id", "name"):
        values = [getattr(gpu_class, attribute) for gpu_class in classes]
        duplicates = sorted({str(v) for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"duplicate class {attribute}: {', '.join(duplicates)}")
    return classes


class DeployParams(_Strict):
    """A whole deployment: tokens, treasury, committee, GPU classes and overrides."""

    stake_token: TokenRef
    payment_token: TokenRef
    treasury: TreasuryRef
    committee: CommitteeParams
    gpu_classes: Annotated[list[GpuClassParams], AfterValidator(_unique_classes)] = Field(min_length=1)
    parameters: ParameterOverrides = Field(default_factory=ParameterOverrides)
    oracle_bonds: OracleBondsParams = Field(default_factory=OracleBondsParams)
    # Two-step ownership transfer after setup to an existing owner (a multisig that then
    # calls accept_ownership); absent: the deployer stays the owner, unless `timelock` is set.
    owner: Address | None = None
    # Deploy a Timelock and hand it the market's ownership (two steps, both by the deploy).
    timelock: TimelockParams | None = None
    # Blocks to wait after the deploy's last transaction, each then checked to be in its block.
    confirmations: StrictInt = Field(default=0, ge=0, le=MAX_CONFIRMATIONS)

    @model_validator(mode="after")
    def _one_owner(self) -> DeployParams:
        if self.owner is not None and self.timelock is not None:
            raise ValueError("owner and timelock both name the market's owner: keep one")
        return self

    def overrides(self) -> dict[str, int]:
        """The parameters the YAML sets, name -> value, in the order of PARAMETER_BOUNDS."""
        values = self.parameters.model_dump()
        return {name: values[name] for name in PARAMETER_BOUNDS if values[name] is not None}

    def uses_mock(self) -> bool:
        return MOCK in (self.stake_token, self.payment_token)

    def with_floor(self, class_id: int, floor_per_gpu_gops: int) -> DeployParams:
        """These parameters with one class's floor changed (a local world on a shared machine)."""
        if class_id not in {c.id for c in self.gpu_classes}:
            raise ParamsError(f"no gpu class {class_id} in these parameters")
        classes = [
            c.model_copy(update={"floor_per_gpu_gops": floor_per_gpu_gops}) if c.id == class_id else c
            for c in self.gpu_classes
        ]
        return self.model_copy(update={"gpu_classes": classes})


def _allowed_fields(parent: tuple[Any, ...]) -> list[str]:
    """Field names allowed where an unknown field was found (for the error message)."""
    model: type[BaseModel] = DeployParams
    for part in parent:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [arg for arg in inner if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _format_errors(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown field (allowed: {', '.join(_allowed_fields(item['loc'][:-1]))})"
        lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def parse_params(data: Any, source: str = "<params>") -> DeployParams:
    """Validate already-parsed YAML/JSON data; raise ParamsError listing every problem."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return DeployParams.model_validate(data)
    except ValidationError as error:
        raise ParamsError(_format_errors(source, error)) from None


def load_params(path: str | Path) -> DeployParams:
    """Read and validate a parameters YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ParamsError(f"{path}: cannot read ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None
    return parse_params(data, str(path))


def params_path_for(ecosystem: str, network: str, params_dir: str | Path = "deploy/params") -> Path:
    """`<params_dir>/<ecosystem>-<network>.yaml` if it exists, else `<params_dir>/default.yaml`."""
    params_dir = Path(params_dir)
    specific = params_dir / f"{ecosystem}-{network}.yaml"
    return specific if specific.is_file() else params_dir / DEFAULT_PARAMS_NAME


def check_for_network(params: DeployParams, *, dev_network: bool, deploy_mock_tokens: bool, network: str) -> None:
    """Refuse what is safe only on a local chain: open-mint mock tokens and test oracles.

    A test oracle's key is derived from a public label, so on a public network anyone
    could sign reports for it and drain the market.
    """
    problems = []
    if not dev_network:
        if deploy_mock_tokens:
            problems.append(f"--deploy-mock-tokens is only allowed on a local network, not {network!r}")
        for field_name in ("stake_token", "payment_token"):
            if getattr(params, field_name) == MOCK:
                problems.append(
                    f"{field_name}: {MOCK!r} (an open-mint MockToken) is only allowed on a local network,"
                    f" not {network!r}; set the token's address"
                )
        if params.timelock is None:
            problems.append(
                f"timelock: required on {network!r}: a public market is owned by a timelock, so no change"
                " to its rules applies before providers and clients can see it (docs/protocol-developer.md)"
            )
        if params.timelock is not None:
            unbonding = params.overrides().get("unbonding_period", DEFAULT_UNBONDING_PERIOD)
            if params.timelock.min_delay <= unbonding:
                problems.append(
                    f"timelock.min_delay: {params.timelock.min_delay:,} s must exceed the unbonding period"
                    f" ({unbonding:,} s) on {network!r}, so that a provider who disagrees with a pending"
                    " change can unstake and withdraw before it applies"
                )
        for member in params.committee.members:
            if is_test_oracle(member):
                problems.append(
                    f"committee.members: {member} is a test oracle whose key anyone can derive;"
                    f" it is only allowed on a local network, not {network!r}"
                )
    if problems:
        raise ParamsError("\n".join(problems))
