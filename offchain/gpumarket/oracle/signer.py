"""The oracle's key and signer: signs only committed decisions; assembles quorums.

:class:`OracleKey` holds the private key. Its ``repr``/``str`` show the address only, it
refuses to be pickled or copied, and the key bytes sit behind a redacting holder, so a log
line, an error, a traceback's locals or ``vars()`` never shows them. Load it from an ape
keystore account (``OracleKey.from_keystore(alias)``; the passphrase comes from
``APE_ACCOUNTS_<alias>_PASSPHRASE``, as ape reads it) or, on local chains only, from a
public test key (``OracleKey.from_test_index(n)``, see :mod:`gpumarket.testing.committee`).

:class:`OracleSigner` ties a key to a :class:`~gpumarket.oracle.store.DecisionStore`:

    signer = OracleSigner(store, key)         # key: an OracleKey, or any ReportKey
    signed = signer.decide_and_sign(report)   # commit the decision, then sign it
    signed = signer.sign_job(job_id)          # sign an already committed decision
    q = signer.quorum(job_id)                 # >= threshold signatures, ascending by signer
    market.settle(eip712.to_tuple(q.report), list(q.signatures), sender=...)

Every signature comes from a :class:`~gpumarket.oracle.store.Decision` the store returned
after its commit, so ``decide_and_sign`` with a different report for a decided job raises
:class:`~gpumarket.oracle.store.ConflictingDecision` before any key is touched.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

from eth_utils import to_checksum_address

from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.store import Decision, DecisionStore, NotDecided, ReportKind, hardware_key, job_key
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, Report
from gpumarket.testing.committee import oracle_key

__all__ = [
    "OracleKeyError",
    "NoQuorum",
    "OracleKey",
    "OracleSigner",
    "Quorum",
    "ReportKey",
    "SignedReport",
    "StaleEpoch",
    "keystore_path",
]

logger = logging.getLogger(__name__)


class OracleKeyError(Exception):
    """The oracle key could not be loaded; the message never holds key material or a passphrase."""


class NoQuorum(Exception):
    """Fewer valid signatures than the threshold are stored for the report."""

    def __init__(self, kind: ReportKind, key: tuple[str, ...], have: int, need: int) -> None:
        self.have = have
        self.need = need
        super().__init__(f"{kind} {'/'.join(key)}: {have} of {need} signatures")


class StaleEpoch(Exception):
    """The decision's epoch is no longer the current one: its signatures are void on chain."""


class _Secret:
    """Holds bytes that must never be shown; every representation is redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a secret cannot be pickled")


@runtime_checkable
class ReportKey(Protocol):
    """What OracleSigner needs of a key: its address and EIP-712 report signatures.

    OracleKey is one; any key object with these two members (e.g. the chain layer's
    service key) works the same.
    """

    address: str

    def sign_report(self, domain: Domain, report: Report) -> bytes: ...


class OracleKey:
    """An oracle's signing key; shows only its address."""

    __slots__ = ("_secret", "address")

    def __init__(self, private_key: bytes | str) -> None:
        if isinstance(private_key, str):
            text = private_key[2:] if private_key[:2] in ("0x", "0X") else private_key
            try:
                private_key = bytes.fromhex(text)
            except ValueError:
                raise OracleKeyError("private key: not a hex string") from None
        try:
            address = eip712.address_of(private_key)
        except ValueError as exc:  # eip712's messages never include the key
            raise OracleKeyError(str(exc)) from None
        self._secret = _Secret(bytes(private_key))
        self.address: str = address

    @classmethod
    def from_test_index(cls, index: int) -> OracleKey:
        """Public test oracle ``index`` (anyone can derive it: local chains only)."""
        return cls(oracle_key(index))

    @classmethod
    def from_keystore(
        cls, alias: str, passphrase: str | None = None, data_folder: str | Path | None = None
    ) -> OracleKey:
        """Decrypt the ape keystore account ``alias`` (``<ape data folder>/accounts/<alias>.json``).

        The passphrase defaults to ``$APE_ACCOUNTS_<alias>_PASSPHRASE`` (ape's own variable);
        the data folder to ``$APE_DATA_FOLDER`` or ``~/.ape``. ape itself is not imported.
        """
        path = keystore_path(alias, data_folder)
        if passphrase is None:
            passphrase = os.environ.get(f"APE_ACCOUNTS_{alias}_PASSPHRASE")
        if passphrase is None:
            raise OracleKeyError(f"no passphrase for account {alias!r}: set APE_ACCOUNTS_{alias}_PASSPHRASE")
        try:
            keyfile = json.loads(path.read_text(encoding="utf8"))
        except FileNotFoundError:
            raise OracleKeyError(f"no keystore account {alias!r} at {path}") from None
        except (OSError, ValueError) as exc:
            raise OracleKeyError(f"cannot read keystore {path}: {type(exc).__name__}") from None
        from eth_account import Account  # imported here: only keystore users pay for it

        try:
            raw = bytes(Account.decrypt(keyfile, passphrase))
        except ValueError:
            raise OracleKeyError(
                f"cannot decrypt keystore account {alias!r}: wrong passphrase or corrupt file"
            ) from None
        key = cls(raw)
        if (
            "address" in keyfile
            and to_checksum_address("0x" + str(keyfile["address"]).removeprefix("0x")) != key.address
        ):
            raise OracleKeyError(f"keystore account {alias!r}: the key does not match the file's address")
        return key

    def sign_report(self, domain: Domain, report: Report) -> bytes:
        """65-byte ``r || s || v`` EIP-712 signature (deterministic, RFC 6979)."""
        return eip712.sign(self._secret.reveal(), domain, report)

    def __repr__(self) -> str:
        return f"OracleKey(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an OracleKey cannot be pickled or copied")


def keystore_path(alias: str, data_folder: str | Path | None = None) -> Path:
    """Where ape keeps the keystore account ``alias``."""
    if not alias or "/" in alias or "\\" in alias or alias in (".", ".."):
        raise OracleKeyError(f"invalid account alias {alias!r}")
    folder = Path(data_folder or os.environ.get("APE_DATA_FOLDER") or Path.home() / ".ape")
    return folder / "accounts" / f"{alias}.json"


@dataclass(frozen=True)
class SignedReport:
    """One signer's signature of one report."""

    kind: ReportKind
    report: Report
    signature: bytes
    signer: str
    digest: bytes

    def to_json(self) -> dict[str, Any]:
        """What ``GET /reports/...`` serves."""
        return {
            "kind": self.kind,
            "report": eip712.to_json(self.report),
            "signature": "0x" + self.signature.hex(),
            "signer": self.signer,
            "digest": "0x" + self.digest.hex(),
        }


@dataclass(frozen=True)
class Quorum:
    """A report and signatures of >= threshold current members, ascending by signer."""

    report: Report
    signatures: tuple[bytes, ...]
    signers: tuple[str, ...]
    epoch: int
    threshold: int

    def call_args(self) -> tuple[tuple[Any, ...], list[bytes]]:
        """``(report tuple, signatures)`` as ``settle`` / ``submit_hardware_report`` take them."""
        return eip712.to_tuple(self.report), list(self.signatures)


class OracleSigner:
    """Signs this oracle's committed decisions and assembles quorums from the store."""

    def __init__(self, store: DecisionStore, key: ReportKey, metrics: OracleMetrics | None = None) -> None:
        if key.address != store.oracle:
            raise OracleKeyError(f"the key's address {key.address} is not the store's oracle {store.oracle}")
        self.store = store
        self._key = key
        self.metrics = metrics or OracleMetrics()

    @property
    def address(self) -> str:
        return self._key.address

    @property
    def domain(self) -> Domain:
        return self.store.domain

    def decide_and_sign(self, report: Report) -> SignedReport:
        """Commit ``report`` as the decision for its key, then sign the committed decision.

        Idempotent for the same report (returns the same signature bytes); raises
        ConflictingDecision for a different one, signing nothing.
        """
        decision = self.store.decide(report)
        if decision.created:
            self.metrics.decisions.inc(kind=decision.kind)
        return self._sign(decision)

    def sign_job(self, job_id: int) -> SignedReport:
        """Our signature of the committed decision for ``job_id`` (signs it if not yet signed)."""
        decision = self.store.job_decision(job_id)
        if decision is None:
            raise NotDecided(f"job {job_id}: no committed decision")
        return self._sign(decision)

    def sign_hardware(self, provider: str, valid_until: int) -> SignedReport:
        decision = self.store.hardware_decision(provider, valid_until)
        if decision is None:
            raise NotDecided(f"hardware {'/'.join(hardware_key(provider, valid_until))}: no committed decision")
        return self._sign(decision)

    def _sign(self, decision: Decision) -> SignedReport:
        # Only a Decision from the store (a committed row) reaches here.
        if decision.signature is None:
            signature = self._key.sign_report(self.domain, decision.report)
            decision = self.store.attach_signature(decision, signature)
            logger.debug("signed %s %s", decision.kind, "/".join(decision.key))
        assert decision.signature is not None
        return SignedReport(decision.kind, decision.report, decision.signature, self.address, decision.digest)

    def quorum(self, job_id: int) -> Quorum:
        """The job's settlement quorum; raises NotDecided, StaleEpoch or NoQuorum."""
        decision = self.store.job_decision(job_id)
        if decision is None:
            raise NotDecided(f"job {job_key(job_id)[0]}: no committed decision")
        return self._quorum(decision)

    def hardware_quorum(self, provider: str, valid_until: int) -> Quorum:
        decision = self.store.hardware_decision(provider, valid_until)
        if decision is None:
            raise NotDecided(f"hardware {'/'.join(hardware_key(provider, valid_until))}: no committed decision")
        return self._quorum(decision)

    def _quorum(self, decision: Decision) -> Quorum:
        if decision.signature is None:  # our own signature counts too: make sure it exists
            self._sign(decision)
        epoch = decision.report.epoch
        current = self.store.current_committee()
        if current is None or current.epoch != epoch:
            raise StaleEpoch(
                f"{decision.kind} {'/'.join(decision.key)}: decided in epoch {epoch}, "
                f"current is {None if current is None else current.epoch}"
            )
        # Re-check every stored signature: the contract rejects the whole call for one bad one.
        valid: dict[int, tuple[str, bytes]] = {}
        for stored in self.store.signatures(decision.digest):
            try:
                signer = eip712.recover(self.domain, decision.report, stored.signature)
            except ValueError:
                continue
            if signer == stored.signer and current.is_member(signer):
                valid[int(signer, 16)] = (signer, stored.signature)
        if len(valid) < current.threshold:
            raise NoQuorum(decision.kind, decision.key, len(valid), current.threshold)
        # Exactly threshold signatures (the lowest signers): the contract needs no more, and each costs gas.
        chosen = [valid[k] for k in sorted(valid)[: current.threshold]]
        return Quorum(
            decision.report,
            tuple(sig for _, sig in chosen),
            tuple(signer for signer, _ in chosen),
            epoch,
            current.threshold,
        )
