"""Typed errors of the client (gpumarket.client); each says what to do next in `hint`.

They are ``ClientError``s, as are the agent API's ``ProviderUnreachable`` and ``ProviderRefused``
(gpumarket.agentapi.errors, where the base and its conventions are). None of them ever carries a
key: they name addresses, job ids, endpoints and hashes only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gpumarket.agentapi.errors import ClientError

__all__ = [
    "FollowTimeout",
    "JobNotAccepted",
    "JobNotRunning",
    "NoProviderAvailable",
    "ResultMismatch",
]


class NoProviderAvailable(ClientError):
    code = "no_provider"
    hint = "raise --max-price, lower --gpus, or list candidates with `gpumarket client providers`"


class ResultMismatch(ClientError):
    """The result bundle does not match the reported or the on-chain result_hash."""

    code = "result_mismatch"
    hint = "do not use this result; the committee's settlement decides payment, report the provider"

    def __init__(self, job_id: int, detail: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: result does not verify: {detail}")


class JobNotRunning(ClientError):
    """An action needs a RUNNING job (or a finished one) and the chain says otherwise."""

    code = "job_not_running"

    def __init__(self, job_id: int, state: str, hint: str = "") -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(f"job {job_id} is {state}", hint or "check it with `gpumarket client status`")


class JobNotAccepted(ClientError):
    """No provider accepted the job before its accept deadline, or within the wait."""

    code = "job_not_accepted"
    hint = "expire it to get the escrow back (JobClient.expire, or `gpumarket client cancel JOB --expire`)"

    def __init__(self, job_id: int, accept_deadline: int, deadline_passed: bool) -> None:
        self.job_id = job_id
        self.accept_deadline = accept_deadline
        self.deadline_passed = deadline_passed
        why = "its accept deadline passed" if deadline_passed else "the wait timed out"
        hint = (
            f"expire it for the refund: `gpumarket client cancel {job_id} --expire`"
            if deadline_passed
            else f"it stays open until its accept deadline: wait for it and send the spec with `gpumarket client"
            f" send-spec {job_id} --spec FILE --wait`, or take the escrow back with `gpumarket client cancel"
            f" {job_id}`"
        )
        when = datetime.fromtimestamp(accept_deadline, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(f"job {job_id} not accepted: {why} (accept deadline {when})", hint)


class FollowTimeout(ClientError):
    code = "follow_timeout"
    hint = "follow again later (`gpumarket client status`); the job keeps going"

    def __init__(self, job_id: int, timeout_s: float) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not terminal within {timeout_s:g} s")
