"""Progress while the story runs: one line per market event, as the chain records it.

    with Narrator(market, names, echo, from_block=deployment.block):
        ...                      # a thread polls the market's logs and echoes each event

Accounts are shown by their role in the story (`names`: address -> name), amounts in tokens.
Whichever launcher runs the services, the chain is what everyone shares, so the narration is
the same for the in-process demo and for devnet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType

from gpumarket.chain.events import (
    HardwareRejected,
    HardwareVerified,
    JobAccepted,
    JobCreated,
    JobExpired,
    JobSettled,
    MarketEvent,
    ProviderJailed,
    ProviderRegistered,
    Slashed,
    Staked,
    scan_events,
)
from gpumarket.chain.market import Market
from gpumarket.chain.walkthrough import tokens

__all__ = ["Narrator", "describe"]

log = logging.getLogger(__name__)

NARRATED = (
    ProviderRegistered,
    Staked,
    HardwareVerified,
    HardwareRejected,
    JobCreated,
    JobAccepted,
    JobSettled,
    Slashed,
    ProviderJailed,
    JobExpired,
)


def describe(event: MarketEvent, names: Mapping[str, str]) -> str | None:
    """One line for `event` (None for events the story does not narrate)."""

    def who(address: str) -> str:
        return names.get(address, address)

    if isinstance(event, ProviderRegistered):
        return (
            f"{who(event.provider)} registers {event.gpu_count} GPU(s) of class {event.gpu_class} at "
            f"{tokens(event.price_per_gpu_second)} mPAY/GPU-s, endpoint {event.endpoint}"
        )
    if isinstance(event, Staked):
        return f"{who(event.provider)} stakes {tokens(event.amount)} mSTK"
    if isinstance(event, HardwareVerified):
        return f"committee verifies {who(event.provider)}'s hardware ({event.measured_throughput} GOPS, 2-of-3 report)"
    if isinstance(event, HardwareRejected):
        return (
            f"committee rejects {who(event.provider)}'s hardware ({event.measured_throughput} of "
            f"{event.required_throughput} GOPS), slashed {tokens(event.slashed)} mSTK"
        )
    if isinstance(event, JobCreated):
        target = "open to any provider" if event.provider not in names else f"for {who(event.provider)}"
        return f"job {event.job_id} created by {who(event.client)} {target}, escrow {tokens(event.escrow)} mPAY"
    if isinstance(event, JobAccepted):
        return (
            f"job {event.job_id} accepted by {who(event.provider)} at "
            f"{tokens(event.price_per_gpu_second)} mPAY/GPU-s, collateral {tokens(event.collateral)} mSTK"
        )
    if isinstance(event, JobSettled):
        if event.outcome.name == "COMPLETED":
            return (
                f"job {event.job_id} settled COMPLETED: {event.gpu_seconds} GPU-s, {who(event.provider)} paid "
                f"{tokens(event.provider_payment)} mPAY (+{tokens(event.protocol_fee)} fee), client refunded "
                f"{tokens(event.client_refund)} mPAY"
            )
        return (
            f"job {event.job_id} settled FAILED: client refunded {tokens(event.client_refund)} mPAY, "
            f"{who(event.provider)} slashed {tokens(event.slashed)} mSTK"
        )
    if isinstance(event, Slashed):
        share = f" ({tokens(event.beneficiary_share)} to {who(event.beneficiary)})" if event.beneficiary_share else ""
        return f"{who(event.provider)} slashed {tokens(event.amount)} mSTK{share}"
    if isinstance(event, ProviderJailed):
        return f"{who(event.provider)} jailed after {event.recent_failures} failed jobs"
    if isinstance(event, JobExpired):
        return f"job {event.job_id} expired ({event.previous_state.name})"
    return None


class Narrator:
    """Echoes the market's narrated events from a background thread (see the module docstring)."""

    def __init__(
        self,
        market: Market,
        names: Mapping[str, str],
        echo: Callable[[str], None],
        *,
        from_block: int = 0,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.market = market
        self.names = dict(names)
        self.echo = echo
        self.next_block = from_block
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one poll at a time: each event is told once
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Echo every narrated event from next_block to the latest block (the story calls it
        too, to show the chain's news before its own next line)."""
        with self._lock:
            latest = self.market.w3.eth.block_number
            if latest < self.next_block:
                return
            for event in scan_events(
                self.market, [cls.name for cls in NARRATED], from_block=self.next_block, to_block=latest
            ):
                line = describe(event, self.names)
                if line is not None:
                    self.echo(line)
            self.next_block = latest + 1

    def echo_after_news(self, line: str) -> None:
        """Echo `line` after the chain's events so far (so an event is never told after what
        it caused)."""
        try:
            self.poll()
        except Exception as error:  # noqa: BLE001 - narration must never stop the story
            log.warning("narrator: %s: %s", type(error).__name__, error)
        self.echo(line)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll()
            except Exception as error:  # noqa: BLE001 - narration must never stop the story
                log.warning("narrator: %s: %s", type(error).__name__, error)

    def __enter__(self) -> Narrator:
        self._thread = threading.Thread(target=self._run, name="demo-narrator", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.poll()  # the last events
        except Exception as error:  # noqa: BLE001
            log.warning("narrator: %s: %s", type(error).__name__, error)
