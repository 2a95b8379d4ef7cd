"""Typed access to a deployed GpuMarket and its ERC20 tokens over web3.

    market = Market(w3, address, signer=key)           # key: keys.ServiceKey or LocalAccount
    job = market.get_job(7)                            # -> models.Job
    result = market.accept_job(7)                      # -> TxResult (decoded events)
    market.create_job(...).event(JobCreated).job_id
    market.with_signer(other_key).cancel_job(7)

Reads take an optional `block` ("latest" by default, or a block number) so a service
can read at the block its events are confirmed at. Every transaction is signed by the
bound local key (Transactor: nonces, gas, fees, bounded receipt wait) and returns a
TxResult with the market's events decoded; a revert raises ContractRevert(reason), e.g.
ContractRevert("escrow: job not running"), before anything is sent when the gas estimate
already reverts. A Market without a signer reads only (transactions raise ValueError).

Retries: reads raise the node's error as it comes; wrap them in
connection.call_with_retry where a service must ride out a node restart. Never retry a
transaction blindly: a send that failed on the way back may have been mined (the next
attempt would take the next nonce and act twice). Re-read the state instead (get_job
says whether the job was already accepted or settled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, TypeVar

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from gpumarket.chain.artifacts import Artifacts, load_artifacts
from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import EventDecoder, MarketEvent
from gpumarket.chain.models import ZERO_ADDRESS, Job, JobState, ProviderRecord, StakeInfo
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.chain.transactions import Signer, Transactor, TxSettings, revert_reason
from gpumarket.signing import eip712
from gpumarket.signing.batch import Multiproof
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport

__all__ = ["BlockId", "JobAttestation", "Market", "OracleBonds", "Token", "TxResult"]

E = TypeVar("E", bound=MarketEvent)
BlockId = int | Literal["latest", "earliest", "pending", "safe", "finalized"]  # a block number or a tag
MAX_UINT256 = 2**256 - 1


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction and the market events it emitted."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[MarketEvent, ...] = ()
    contract_address: str | None = None

    def events_of(self, event_type: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, event_type)]

    def event(self, event_type: type[E]) -> E:
        """The one `event_type` event of this transaction (ValueError unless exactly one)."""
        found = self.events_of(event_type)
        if len(found) != 1:
            raise ValueError(f"expected one {event_type.__name__} in {self.tx_hash}, found {len(found)}")
        return found[0]


def _address(value: Any) -> ChecksumAddress:
    return Web3.to_checksum_address(str(value))


class _Bound:
    """A contract (the artifact ``CONTRACT``) bound to an optional signer: shared construction,
    call and transaction plumbing."""

    CONTRACT: ClassVar[str]

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        signer: Signer | None = None,
        artifacts: Artifacts | None = None,
        tx_settings: TxSettings | None = None,
    ) -> None:
        self._artifacts = artifacts or load_artifacts()
        self.w3 = w3
        self.address = _address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=self._artifacts[self.CONTRACT].abi)
        self.signer = signer
        self._tx_settings = tx_settings
        self._sender = None if signer is None else Transactor.for_signer(w3, signer, tx_settings)

    def with_signer(self, signer: Signer) -> Self:
        """The same contract, transacting as `signer`."""
        return type(self)(
            self.w3, self.address, signer=signer, artifacts=self._artifacts, tx_settings=self._tx_settings
        )

    @property
    def artifacts(self) -> Artifacts:
        """The compiled contracts this binding reads its ABIs from."""
        return self._artifacts

    @property
    def tx_settings(self) -> TxSettings | None:
        return self._tx_settings

    @property
    def sender(self) -> str | None:
        """The bound signer's address (None when read-only)."""
        return None if self._sender is None else self._sender.address

    def _call(self, name: str, *args: Any, block: BlockId = "latest") -> Any:
        try:
            return getattr(self.contract.functions, name)(*args).call(block_identifier=block)
        except Exception as error:
            reason = revert_reason(error)
            if reason is None:
                raise
            raise ContractRevert(reason, function=name) from None

    def _send(self, name: str, *args: Any) -> TxResult:
        return self._send_to(self.address, self.contract.encode_abi(name, args=list(args)), name)

    def _send_to(self, to: str, data: str, label: str) -> TxResult:
        """Send `data` to `to` (this contract or a companion), this contract's events decoded."""
        if self._sender is None:
            raise ValueError(f"{label}: this {type(self).__name__} has no signer (use with_signer)")
        receipt = self._sender.send(to=to, data=data, label=label)
        return TxResult(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=self._decode_events(receipt),
        )

    def _decode_events(self, receipt: Any) -> tuple[MarketEvent, ...]:
        return ()


class Token(_Bound):
    """An ERC20 (MockToken's ABI, a superset of ERC20's); `mint` works on MockTokens only.
    Its TxResults carry no events (only market events are decoded)."""

    CONTRACT = "MockToken"

    def __repr__(self) -> str:
        return f"Token({self.address})"

    def name(self) -> str:
        return str(self._call("name"))

    def symbol(self) -> str:
        return str(self._call("symbol"))

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def total_supply(self, *, block: BlockId = "latest") -> int:
        return int(self._call("totalSupply", block=block))

    def balance_of(self, account: str, *, block: BlockId = "latest") -> int:
        return int(self._call("balanceOf", _address(account), block=block))

    def allowance(self, owner: str, spender: str, *, block: BlockId = "latest") -> int:
        return int(self._call("allowance", _address(owner), _address(spender), block=block))

    def approve(self, spender: str, amount: int = MAX_UINT256) -> TxResult:
        return self._send("approve", _address(spender), amount)

    def transfer(self, to: str, amount: int) -> TxResult:
        return self._send("transfer", _address(to), amount)

    def mint(self, to: str, amount: int) -> TxResult:
        """MockToken's open mint (local chains; a real ERC20 has no such function)."""
        return self._send("mint", _address(to), amount)


class OracleBonds(_Bound):
    """A market's OracleBonds companion: committee members' bonds and equivocation slashing.
    Its TxResults carry no events (only market events are decoded)."""

    CONTRACT = "OracleBonds"

    def __repr__(self) -> str:
        return f"OracleBonds({self.address})"

    def bond_amount(self, *, block: BlockId = "latest") -> int:
        return int(self._call("bond_amount", block=block))

    def withdrawal_delay(self, *, block: BlockId = "latest") -> int:
        return int(self._call("withdrawal_delay", block=block))

    def bond_of(self, account: str, *, block: BlockId = "latest") -> int:
        return int(self._call("bond_of", _address(account), block=block))

    def withdrawable_at(self, account: str, *, block: BlockId = "latest") -> int:
        return int(self._call("withdrawable_at", _address(account), block=block))

    def flagged(self, account: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("flagged", _address(account), block=block))

    def eligible(self, account: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("eligible", _address(account), block=block))

    def claimable(self, account: str, *, block: BlockId = "latest") -> int:
        return int(self._call("claimable", _address(account), block=block))

    def post_bond(self, amount: int) -> TxResult:
        return self._send("post_bond", amount)

    def request_withdrawal(self) -> TxResult:
        return self._send("request_withdrawal")

    def withdraw(self) -> TxResult:
        return self._send("withdraw")

    def claim(self) -> TxResult:
        return self._send("claim")

    def prove_job_equivocation(self, member: str, first: JobAttestation, second: JobAttestation) -> TxResult:
        return self._send("prove_job_equivocation", _address(member), first.to_tuple(), second.to_tuple())

    def prove_hardware_equivocation(
        self, member: str, first: tuple[HardwareReport, bytes], second: tuple[HardwareReport, bytes]
    ) -> TxResult:
        return self._send(
            "prove_hardware_equivocation",
            _address(member),
            (eip712.to_tuple(first[0]), bytes(first[1])),
            (eip712.to_tuple(second[0]), bytes(second[1])),
        )

    def clear_flag(self, member: str) -> TxResult:
        return self._send("clear_flag", _address(member))

    def set_bond_amount(self, amount: int) -> TxResult:
        return self._send("set_bond_amount", amount)

    def set_withdrawal_delay(self, seconds: int) -> TxResult:
        return self._send("set_withdrawal_delay", seconds)


@dataclass(frozen=True)
class JobAttestation:
    """One member's signature of one job report: of the report alone (`path` None) or of a
    batch root, with the report's Merkle path to it (gpumarket.signing.batch)."""

    report: JobReport
    signature: bytes
    path: tuple[bytes, ...] | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return (eip712.to_tuple(self.report), bytes(self.signature), self.path is not None, list(self.path or ()))


class Market(_Bound):
    """One deployed GpuMarket; see the module docstring."""

    CONTRACT = "GpuMarket"

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        signer: Signer | None = None,
        artifacts: Artifacts | None = None,
        tx_settings: TxSettings | None = None,
    ) -> None:
        super().__init__(w3, address, signer=signer, artifacts=artifacts, tx_settings=tx_settings)
        self.decoder = EventDecoder(w3, self._artifacts[self.CONTRACT].abi)
        self._tokens: tuple[str, str] | None = None
        self._chain_id: int | None = None
        self._settler: Contract | None = None  # the market creates it once, for good: read once

    def __repr__(self) -> str:
        return f"Market({self.address}, signer={self.sender})"

    def _decode_events(self, receipt: Any) -> tuple[MarketEvent, ...]:
        decoded = (self.decoder.decode(raw) for raw in receipt["logs"] if _address(raw["address"]) == self.address)
        return tuple(event for event in decoded if event is not None)

    # ------------------------------------------------------------------ identity

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def domain(self) -> Domain:
        """The EIP-712 domain the committee signs this market's reports in."""
        return Domain(chain_id=self.chain_id, verifying_contract=self.address)

    def _token_addresses(self) -> tuple[str, str]:
        if self._tokens is None:
            self._tokens = (_address(self._call("STAKE_TOKEN")), _address(self._call("PAYMENT_TOKEN")))
        return self._tokens

    @property
    def stake_token(self) -> Token:
        """STAKE_TOKEN, bound to the same signer."""
        return Token(
            self.w3,
            self._token_addresses()[0],
            signer=self.signer,
            artifacts=self._artifacts,
            tx_settings=self._tx_settings,
        )

    @property
    def payment_token(self) -> Token:
        """PAYMENT_TOKEN, bound to the same signer."""
        return Token(
            self.w3,
            self._token_addresses()[1],
            signer=self.signer,
            artifacts=self._artifacts,
            tx_settings=self._tx_settings,
        )

    # ------------------------------------------------------------------ reads

    def get_job(self, job_id: int, *, block: BlockId = "latest") -> Job:
        raw = self._call("get_job", job_id, block=block)
        return Job(
            job_id=job_id,
            client=_address(raw[0]),
            provider=_address(raw[1]),
            state=JobState(raw[2]),
            gpu_class=int(raw[3]),
            gpu_count=int(raw[4]),
            max_price_per_gpu_second=int(raw[5]),
            price_per_gpu_second=int(raw[6]),
            max_duration=int(raw[7]),
            accept_deadline=int(raw[8]),
            started_at=int(raw[9]),
            collateral=int(raw[10]),
            escrow=int(raw[11]),
            spec_hash=bytes(raw[12]),
        )

    def job_count(self, *, block: BlockId = "latest") -> int:
        return int(self._call("job_count", block=block))

    def providers(self, provider: str, *, block: BlockId = "latest") -> ProviderRecord:
        raw = self._call("providers", _address(provider), block=block)
        return ProviderRecord(
            address=_address(provider),
            gpu_class=int(raw[0]),
            gpu_count=int(raw[1]),
            claim_version=int(raw[2]),
            price_per_gpu_second=int(raw[3]),
            endpoint=str(raw[4]),
            verified_until=int(raw[5]),
            recent_failures=int(raw[6]),
            failure_window_start=int(raw[7]),
            jailed=bool(raw[8]),
        )

    def is_verified(self, provider: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("is_verified", _address(provider), block=block))

    def gpus_in_use(self, provider: str, *, block: BlockId = "latest") -> int:
        """GPUs `provider`'s running jobs hold: a job fits if gpus_in_use + its count <= gpu_count."""
        return int(self._call("gpus_in_use", _address(provider), block=block))

    def last_report_valid_until(self, provider: str, claim_version: int, *, block: BlockId = "latest") -> int:
        """valid_until of the last hardware report accepted for `provider`'s claim `claim_version`
        (0 if none): the next report of that claim must be valid later."""
        return int(self._call("last_report_valid_until", _address(provider), claim_version, block=block))

    def stake_of(self, provider: str, *, block: BlockId = "latest") -> StakeInfo:
        free, locked, unbonding, release_at = self._call("stake_of", _address(provider), block=block)
        return StakeInfo(free=int(free), locked=int(locked), unbonding=int(unbonding), release_at=int(release_at))

    def epoch(self, *, block: BlockId = "latest") -> int:
        return int(self._call("epoch", block=block))

    def members(self, *, block: BlockId = "latest") -> list[str]:
        return [_address(member) for member in self._call("members", block=block)]

    def threshold(self, *, block: BlockId = "latest") -> int:
        return int(self._call("threshold", block=block))

    def was_member(self, epoch: int, account: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("was_member", epoch, _address(account), block=block))

    def batch_settler(self, *, block: BlockId = "latest") -> ChecksumAddress:
        """The BatchSettler companion's address (the zero address for a market deployed without companions)."""
        return _address(self._call("batch_settler", block=block))

    def oracle_bonds_address(self, *, block: BlockId = "latest") -> ChecksumAddress:
        """The OracleBonds companion's address (the zero address for a market deployed without companions)."""
        return _address(self._call("oracle_bonds", block=block))

    @property
    def bonds(self) -> OracleBonds:
        """The market's OracleBonds companion, bound to the same signer."""
        address = self.oracle_bonds_address()
        if address == ZERO_ADDRESS:
            raise ValueError("this market was deployed without companions: it has no OracleBonds")
        return OracleBonds(
            self.w3, address, signer=self.signer, artifacts=self._artifacts, tx_settings=self._tx_settings
        )

    def is_member(self, account: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("is_member", _address(account), block=block))

    def class_floor(self, gpu_class: int, *, block: BlockId = "latest") -> int:
        """Throughput floor per GPU (GOPS) of `gpu_class`; 0 when the class is not listed."""
        return int(self._call("class_floor", gpu_class, block=block))

    def claimable(self, token: str | Token, account: str, *, block: BlockId = "latest") -> int:
        token_address = token.address if isinstance(token, Token) else _address(token)
        return int(self._call("claimable", token_address, _address(account), block=block))

    def parameters(self, *, block: BlockId = "latest") -> dict[str, int]:
        """Every governance parameter (PARAMETER_BOUNDS' names) -> its current value."""
        return {name: int(self._call(name, block=block)) for name in PARAMETER_BOUNDS}

    def treasury(self, *, block: BlockId = "latest") -> str:
        return _address(self._call("treasury", block=block))

    def owner(self, *, block: BlockId = "latest") -> str:
        return _address(self._call("owner", block=block))

    def pending_owner(self, *, block: BlockId = "latest") -> str:
        return _address(self._call("pending_owner", block=block))

    def paused(self, *, block: BlockId = "latest") -> bool:
        return bool(self._call("paused", block=block))

    def domain_separator(self) -> bytes:
        return bytes(self._call("domain_separator"))

    def job_report_digest(self, report: JobReport) -> bytes:
        """The digest the contract verifies for `report` (equals eip712.digest(domain, report))."""
        return bytes(self._call("job_report_digest", eip712.to_tuple(report)))

    def hardware_report_digest(self, report: HardwareReport) -> bytes:
        return bytes(self._call("hardware_report_digest", eip712.to_tuple(report)))

    def block_timestamp(self, block: BlockId = "latest") -> int:
        return int(self.w3.eth.get_block(block)["timestamp"])

    # ------------------------------------------------------------------ provider actions

    def register(self, gpu_class: int, gpu_count: int, price_per_gpu_second: int, endpoint: str) -> TxResult:
        return self._send("register", gpu_class, gpu_count, price_per_gpu_second, endpoint)

    def update_provider(self, gpu_class: int, gpu_count: int, price_per_gpu_second: int, endpoint: str) -> TxResult:
        return self._send("update_provider", gpu_class, gpu_count, price_per_gpu_second, endpoint)

    def stake(self, amount: int) -> TxResult:
        """Needs a stake-token allowance (`market.stake_token.approve(market.address, ...)`)."""
        return self._send("stake", amount)

    def request_unstake(self, amount: int) -> TxResult:
        return self._send("request_unstake", amount)

    def withdraw(self) -> TxResult:
        return self._send("withdraw")

    def accept_job(self, job_id: int) -> TxResult:
        return self._send("accept_job", job_id)

    # ------------------------------------------------------------------ client actions

    def create_job(
        self,
        gpu_class: int,
        gpu_count: int,
        max_price_per_gpu_second: int,
        max_duration: int,
        spec_hash: bytes,
        accept_deadline: int,
        provider: str | None = None,
    ) -> TxResult:
        """Escrows max_price * gpu_count * max_duration payment tokens (needs an allowance).
        The new id: `result.event(JobCreated).job_id`. `provider` None = an open job."""
        return self._send(
            "create_job",
            gpu_class,
            gpu_count,
            max_price_per_gpu_second,
            max_duration,
            bytes(spec_hash),
            _address(provider) if provider else ZERO_ADDRESS,
            accept_deadline,
        )

    def cancel_job(self, job_id: int) -> TxResult:
        return self._send("cancel_job", job_id)

    # ------------------------------------------------------------------ anyone

    def expire_job(self, job_id: int) -> TxResult:
        return self._send("expire_job", job_id)

    def settle(self, report: JobReport, signatures: Sequence[bytes]) -> TxResult:
        """Submit a quorum-signed JobReport (signatures sorted by signer, as
        eip712.quorum_signatures returns them)."""
        return self._send("settle", eip712.to_tuple(report), [bytes(s) for s in signatures])

    def settle_batch(self, multiproof: Multiproof, signatures: Sequence[bytes]) -> TxResult:
        """Settle `multiproof`'s reports through the BatchSettler with a quorum's signatures of
        their batch root (sorted by signer); the TxResult holds the market's JobSettled events."""
        if self._settler is None:
            address = self.batch_settler()
            if address == ZERO_ADDRESS:
                raise ValueError("this market was deployed without companions: it has no BatchSettler")
            self._settler = self.w3.eth.contract(address=address, abi=self._artifacts["BatchSettler"].abi)
        args = [
            [eip712.to_tuple(report) for report in multiproof.reports],
            list(multiproof.proof),
            multiproof.flag_bits,
            [bytes(s) for s in signatures],
        ]
        settler = self._settler
        return self._send_to(settler.address, settler.encode_abi("settle_batch", args=args), "settle_batch")

    def submit_hardware_report(self, report: HardwareReport, signatures: Sequence[bytes]) -> TxResult:
        return self._send("submit_hardware_report", eip712.to_tuple(report), [bytes(s) for s in signatures])

    def claim(self, token: str | Token) -> TxResult:
        """Pull everything credited to the signer in `token` (STAKE_TOKEN or PAYMENT_TOKEN)."""
        return self._send("claim", token.address if isinstance(token, Token) else _address(token))

    # ------------------------------------------------------------------ governance (owner)

    def set_gpu_class(self, gpu_class: int, floor_per_gpu: int) -> TxResult:
        return self._send("set_gpu_class", gpu_class, floor_per_gpu)

    def set_parameter(self, name: str, value: int) -> TxResult:
        """One bounded setter, `set_<name>`, for a name of PARAMETER_BOUNDS."""
        if name not in PARAMETER_BOUNDS:
            raise ValueError(f"unknown parameter {name!r} (one of {', '.join(PARAMETER_BOUNDS)})")
        return self._send(f"set_{name}", value)

    def set_committee(self, members: Sequence[str], threshold: int) -> TxResult:
        return self._send("set_committee", [_address(m) for m in members], threshold)

    def set_treasury(self, treasury: str) -> TxResult:
        return self._send("set_treasury", _address(treasury))

    def unjail(self, provider: str) -> TxResult:
        return self._send("unjail", _address(provider))

    def pause(self) -> TxResult:
        return self._send("pause")

    def unpause(self) -> TxResult:
        return self._send("unpause")

    def transfer_ownership(self, new_owner: str) -> TxResult:
        return self._send("transfer_ownership", _address(new_owner))

    def accept_ownership(self) -> TxResult:
        return self._send("accept_ownership")
