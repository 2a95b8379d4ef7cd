"""The agent's challenge desk: oracles take turns at the prover, and their waiting is never timed.

Several oracles challenge one agent: at a job's start each of them, and during the job each
one's heartbeats. The prover answers one challenge at a time (two at once would share the
device and both measure half of it), and the oracle's clock starts when it sends its challenge,
so a challenge that waits for the prover would be timed as slow work. So an oracle first asks
for a **turn** (``POST /challenge/turn``): the request waits, first come first served, until
the prover is free, then reserves it for that oracle for ``turn_valid_s`` and answers a token.
The oracle sends its challenge at once with the token (``X-Challenge-Turn``) and only then
starts its clock: the waiting happened before t0. A turn not used in time lapses and the next
oracle's turn comes. A challenge sent without a turn is answered only when nobody holds or
waits for the prover (older verifiers, one-off checks); otherwise 503 ``busy``.

The turn reveals nothing about the challenge (its seed arrives with it), so a provider gains
nothing by granting turns late: the time before t0 is not the oracle's measurement.

Checks on every challenge: only this agent's GPU class, with its sizes and at most its GPU
count in rounds (422 otherwise: a hostile size would make the agent compute for hours); a
challenge id is answered once and opened once (409), tracked in the agent's SQLite store.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from gpumarket.agentapi.errors import AgentError
from gpumarket.measure.classes import GpuClass
from gpumarket.measure.messages import Challenge, Message, MessageError, OpeningRequest
from gpumarket.measure.provers import ProverError, TileProver
from gpumarket.provider.store import Store

__all__ = ["ChallengeDesk", "Turn"]

M = TypeVar("M", bound=Message)


class Turn:
    """A reservation of the prover: its token, and until when (monotonic) it holds."""

    def __init__(self, token: str, expires: float) -> None:
        self.token = token
        self.expires = expires


class ChallengeDesk:
    """Answers challenges for one agent; see the module docstring.

    ``max_wait_s``: how long a turn request waits before it is answered 503 (the oracle asks
    again); ``turn_valid_s``: how long a granted turn holds the prover for its challenge.
    """

    def __init__(
        self,
        prover: TileProver,
        store: Store,
        gpu_class: GpuClass,
        gpu_count: int,
        *,
        max_wait_s: float = 20.0,
        turn_valid_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prover = prover
        self.store = store
        self.gpu_class = gpu_class
        self.gpu_count = max(1, gpu_count)
        self.max_wait_s = max_wait_s
        self.turn_valid_s = turn_valid_s
        self._clock = clock
        self._changed = threading.Condition()
        self._queue: deque[str] = deque()  # tokens waiting for a turn, first come first served
        self._granted: Turn | None = None  # a turn handed out whose challenge has not come yet
        self._proving = False  # a commitment is being computed
        self._open_lock = threading.Lock()  # openings touch the prover's kept commitments

    # ------------------------------------------------------------------ turns

    def request_turn(self, max_wait_s: float | None = None) -> Turn:
        """Waits for the prover (first come first served) and reserves it; 503 after ``max_wait_s``."""
        wait_s = self.max_wait_s if max_wait_s is None else min(max_wait_s, self.max_wait_s)
        token = secrets.token_hex(16)
        deadline = self._clock() + wait_s
        with self._changed:
            self._queue.append(token)
            try:
                while not (self._queue[0] == token and self._free()):
                    left = deadline - self._clock()
                    if left <= 0:
                        raise AgentError(
                            503,
                            "busy",
                            f"no turn within {wait_s:.0f} s: other challenges are queued",
                            headers={"Retry-After": "1"},
                        )
                    # Woken when a turn is used, lapses or a commitment ends; the timeout also
                    # lets a lapsed turn be noticed without anyone to wake us.
                    self._changed.wait(min(left, self.turn_valid_s))
                self._granted = Turn(token, self._clock() + self.turn_valid_s)
                return self._granted
            finally:
                self._queue.remove(token)
                self._changed.notify_all()

    def _free(self) -> bool:
        """Nobody is proving, and no granted turn is still valid (call with the condition held)."""
        if self._granted is not None and self._granted.expires <= self._clock():
            self._granted = None  # lapsed unused: the next in the queue goes
        return not self._proving and self._granted is None

    def _take(self, token: str | None) -> None:
        """Claims the prover for one commitment, with a granted turn or, when idle, without."""
        with self._changed:
            if token:
                granted = self._granted
                if granted is None or granted.token != token or granted.expires <= self._clock():
                    raise AgentError(
                        409,
                        "turn_expired",
                        "this turn is unknown or lapsed: ask for a new one",
                    )
                self._granted = None
            elif self._queue or not self._free():
                raise AgentError(503, "busy", "another challenge is being answered", headers={"Retry-After": "1"})
            self._proving = True

    def _release(self) -> None:
        with self._changed:
            self._proving = False
            self._changed.notify_all()

    # ------------------------------------------------------------------ challenges

    def answer(self, raw: bytes, turn: str | None = None) -> bytes:
        """A Challenge's wire bytes in, the Commitment's out."""
        challenge = _parse_message(Challenge, raw)
        self._check_sizes(challenge)
        self._take(turn)
        challenge_id: bytes = challenge.challenge_id
        try:
            if not self.store.record_challenge(challenge_id):
                raise AgentError(409, "replayed_challenge", f"challenge {challenge_id.hex()} was already answered")
            with self._open_lock:  # the prover keeps a bounded set of commitments for opening
                commitment = self.prover.commit(challenge)
            self.store.set_challenge_root(challenge_id, commitment.root)
        finally:
            self._release()
        return commitment.to_bytes()

    def open(self, raw: bytes) -> bytes:
        """An OpeningRequest's wire bytes in, the Opening's out."""
        request = _parse_message(OpeningRequest, raw)
        challenge_id: bytes = request.challenge_id
        known = self.store.challenge(challenge_id)
        if known is None:
            raise AgentError(404, "unknown_challenge", f"challenge {challenge_id.hex()} was never answered here")
        if not self.store.open_challenge(challenge_id):
            reason = "was already opened" if known.opened_at is not None else "has no commitment"
            raise AgentError(409, "replayed_challenge", f"challenge {challenge_id.hex()} {reason}")
        with self._open_lock:
            try:
                opening = self.prover.open(request)
            except ProverError as error:
                raise AgentError(422, "cannot_open", str(error)) from None
        return opening.to_bytes()

    def _check_sizes(self, challenge: Challenge) -> None:
        expected = self.gpu_class
        if challenge.gpu_class != expected.id:
            raise AgentError(
                422,
                "challenge_refused",
                f"this agent serves gpu class {expected.id} ({expected.name}), not {challenge.gpu_class}",
            )
        sizes = ("m", "n", "p", "tile", "tiles_per_leaf")
        wrong = [
            f"{name}={getattr(challenge, name)}"
            for name in sizes
            if getattr(challenge, name) != getattr(expected, name)
        ]
        gpus = self.gpu_count
        if challenge.rounds % expected.rounds or not 1 <= challenge.rounds // expected.rounds <= gpus:
            wrong.append(f"rounds={challenge.rounds} (expected {expected.rounds} per GPU, at most {gpus} GPUs)")
        if wrong:
            raise AgentError(422, "challenge_refused", f"sizes differ from class {expected.name}: {', '.join(wrong)}")


def _parse_message(cls: type[M], raw: bytes) -> M:
    try:
        json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AgentError(400, "malformed_json", f"{cls.message_type()}: not JSON: {error}") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise AgentError(400, "malformed_json", f"{cls.message_type()}: JSON nested too deeply") from None
    try:
        return cls.parse(raw)
    except MessageError as error:
        raise AgentError(422, "invalid_message", str(error)) from None
