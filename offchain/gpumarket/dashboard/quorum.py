"""Who signed a settlement: the committee members behind a quorum-signed report, read back from
the transaction that submitted it.

    quorum_signers(market, settled.meta.tx_hash)   -> ("0x6c6e...", "0x5A57...")  or None

No event names the signers (JobSettled and the hardware events carry the report's result, not
its signatures), but the transaction's input holds the report and every signature: each
signature recovers to its signer over the report's EIP-712 digest, exactly as the contract
checked them. A report submitted by another contract (a multisig, a batching helper) has no
such input: its signers are unknown (None), never guessed.
"""

from __future__ import annotations

import logging
from typing import Any

from web3 import Web3

from gpumarket.chain.market import Market
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import HardwareReport, JobReport

__all__ = ["QUORUM_EVENTS", "quorum_signers"]

log = logging.getLogger(__name__)

# The events of a quorum-signed report, whose transaction names the signers.
QUORUM_EVENTS = ("JobSettled", "HardwareVerified", "HardwareRejected")
# The market's functions that take a quorum-signed report, and the report each takes.
_REPORT_OF_FUNCTION: dict[str, type[JobReport] | type[HardwareReport]] = {
    "settle": JobReport,
    "submit_hardware_report": HardwareReport,
}


def quorum_signers(market: Market, tx_hash: str) -> tuple[str, ...] | None:
    """The signers of the report ``tx_hash`` submitted to ``market`` directly, in the order it
    passed them; None when the transaction is no direct call of ``settle`` or
    ``submit_hardware_report`` (see the module docstring)."""
    transaction = market.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    to = transaction.get("to")
    if to is None or Web3.to_checksum_address(to) != market.address:
        return None
    try:
        function, arguments = market.contract.decode_function_input(transaction["input"])
    except ValueError:  # not one of the market's functions
        return None
    report_type = _REPORT_OF_FUNCTION.get(str(function.fn_name))
    if report_type is None:
        return None
    report = report_type(**_plain(arguments["report"]))
    try:
        return tuple(eip712.recover(market.domain, report, bytes(signature)) for signature in arguments["signatures"])
    except ValueError as error:  # the contract accepted them, so this is not expected: say so, show none
        log.warning("%s: a signature does not recover (%s)", tx_hash, error)
        return None


def _plain(struct: Any) -> dict[str, Any]:
    """The decoded report's members as the report dataclass takes them (bytes for bytes32)."""
    return {name: bytes(value) if isinstance(value, (bytes, bytearray)) else value for name, value in struct.items()}
