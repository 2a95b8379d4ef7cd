"""Typed errors of the client (gpumarket.client); each says what to do next in `hint`.

None of them ever carries a key: they name addresses, job ids, endpoints and hashes only.
`code` is a stable name for scripts (the command line's --json error documents carry it).
"""

from __future__ import annotations

from datetime import UTC, datetime

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
    code: str = "client_error"

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint or self.hint
        super().__init__(message)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class NoProviderAvailable(ClientError):
    code = "no_provider"
    hint = "raise --max-price, lower --gpus, or list candidates with `gpumarket client providers`"


class ProviderUnreachable(ClientError):
    """The provider's endpoint did not answer (connection refused, timeout, bad HTTP, an answer over the size cap)."""

    code = "provider_unreachable"
    hint = "retry later; if it stays down after acceptance, the committee fails the job and you are refunded"

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"provider at {endpoint} unreachable: {reason}")


class ProviderRefused(ClientError):
    """The provider answered with an error: `code`, `detail` (and `field`, when it names one) from
    its error document {"error", "detail", "field"}, or `http_error` when it sent none."""

    def __init__(self, endpoint: str, status: int, code: str, detail: str, field: str | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
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
