"""Store.end_on_chain: only an accepted job that never got its spec becomes lost."""

from __future__ import annotations

from gpumarket.provider.store import JobStatus, Store


def test_end_on_chain_loses_only_accepted_jobs(store: Store):
    client = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
    store.accept(1, client, b"\x01" * 32)
    ended = store.end_on_chain(1, "expired on chain before its spec arrived")
    assert ended.state == JobStatus.LOST and ended.detail == "expired on chain before its spec arrived"
    assert ended.finished_at is not None
    assert store.end_on_chain(1, "again").detail == "expired on chain before its spec arrived"  # idempotent

    store.accept(2, client, b"\x02" * 32)
    store.receive_spec(2, client, b"\x02" * 32, b"{}", (), "/tmp/job-2")
    store.mark_running(2, pid=123, start_ticks=456, started_at=1.0)
    assert store.end_on_chain(2, "failed on chain").state == JobStatus.RUNNING  # its run records its own end
    assert store.end_on_chain(3, "unknown job") is None
