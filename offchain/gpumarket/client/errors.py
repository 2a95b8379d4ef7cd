"""Typed errors of the client (gpumarket.client); each says what to do next in `hint`.

None of them ever carries a key: they name addresses, job ids, endpoints and hashes only.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "FollowTimeout",
    "JobNotAccepted",
    "JobNotRunning",
    "NoProviderAvailable",
    "ProviderRefused",
    "ProviderUnreachable",
    "ResultMismatch",
]


class ClientError(RuntimeError):
    """Base class; `hint` is the next step for the user (also shown by the CLI)."""

    hint: str = ""

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint or self.hint
        super().__init__(message)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class NoProviderAvailable(ClientError):
    hint = "raise --max-price, lower --gpus, or list candidates with `gpumarket client providers`"


class ProviderUnreachable(ClientError):
    """The provider's endpoint did not answer (connection refused, timeout, bad HTTP)."""

    hint = "retry later; if it stays down after acceptance, the committee fails the job and you are refunded"

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"provider at {endpoint} unreachable: {reason}")


class ProviderRefused(ClientError):
    """The provider answered with an error document {"error", "detail"}."""

    def __init__(self, endpoint: str, status: int, code: str, detail: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.detail = detail
        hints = {
            "spec_hash_mismatch": "send the exact spec whose hash the job was created with",
            "wrong_signer": "use the key of the account that created the job",
            "job_not_running": "wait until the job is accepted (`gpumarket client status`)",
            "not_finished": "wait until the job is finished (`gpumarket client status`)",
            "expired": "check this machine's clock",
        }
        super().__init__(f"provider at {endpoint} refused ({status} {code}): {detail}", hints.get(code, ""))


class ResultMismatch(ClientError):
    """The result bundle does not match the reported or the on-chain result_hash."""

    hint = "do not use this result; the committee's settlement decides payment, report the provider"

    def __init__(self, job_id: int, detail: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: result does not verify: {detail}")


class JobNotRunning(ClientError):
    """An action needs a RUNNING job (or a finished one) and the chain says otherwise."""

    def __init__(self, job_id: int, state: str, hint: str = "") -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(f"job {job_id} is {state}", hint or "check it with `gpumarket client status`")


class JobNotAccepted(ClientError):
    """No provider accepted the job before its accept deadline."""

    hint = "expire it to get the escrow back (JobClient.expire, or `gpumarket client cancel --expire JOB`)"

    def __init__(self, job_id: int, accept_deadline: int, deadline_passed: bool) -> None:
        self.job_id = job_id
        self.accept_deadline = accept_deadline
        self.deadline_passed = deadline_passed
        why = "its accept deadline passed" if deadline_passed else "the wait timed out"
        hint = "" if deadline_passed else "wait longer, or cancel it while still open (`gpumarket client cancel`)"
        super().__init__(f"job {job_id} not accepted: {why} (deadline {accept_deadline})", hint)


class FollowTimeout(ClientError):
    hint = "follow again later (`gpumarket client status`); the job keeps going"

    def __init__(self, job_id: int, timeout_s: float) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not terminal within {timeout_s:g} s")
