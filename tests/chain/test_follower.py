"""gpumarket.chain.follower.EventFollower: confirmation depth, bounded ranges, a cursor that
survives restarts, no event handled twice, handler failures rolled back, and a node that
drops and comes back (anvil, restarted on the same port with its state)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from gpumarket.chain.connection import RetryPolicy, connect, mine
from gpumarket.chain.errors import ChainMismatch, ChainUnavailable
from gpumarket.chain.events import JobCancelled, JobCreated, MarketEvent, ProviderRegistered
from gpumarket.chain.follower import EventFollower, FollowerConfig, HandlerError

from .conftest import CPU_DEV, PRICE

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


class Recorder:
    """A handler that writes each event into the follower's database, in its transaction."""

    def __init__(self, fail_on: set[tuple[str, int]] | None = None) -> None:
        self.calls: list[MarketEvent] = []
        self.fail_on = fail_on if fail_on is not None else set()

    def __call__(self, event: MarketEvent, db: sqlite3.Connection) -> None:
        self.calls.append(event)
        db.execute("CREATE TABLE IF NOT EXISTS seen (tx TEXT, idx INTEGER, name TEXT)")
        db.execute("INSERT INTO seen VALUES (?, ?, ?)", (event.key[0], event.key[1], event.name))
        if event.key in self.fail_on:
            raise RuntimeError("handler failure for the test")

    @staticmethod
    def stored(db_path) -> list[tuple[str, int, str]]:
        with sqlite3.connect(db_path) as db:
            try:
                return db.execute("SELECT tx, idx, name FROM seen ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:
                return []


def _follower(kit, db_path, handler, **config) -> EventFollower:
    settings = {"confirmations": 0, "retry": FAST_RETRY, "poll_interval": 0.05, **config}
    return EventFollower(
        kit.w3,
        kit.deployment.market,
        db_path,
        handler,
        start_block=kit.deployment.block,
        config=FollowerConfig(**settings),
        abi=kit.artifacts["GpuMarket"].abi,
    )


def _register(kit, key, endpoint="http://127.0.0.1:8700"):
    kit.fund(key)
    return kit.market(key).register(CPU_DEV, 1, PRICE, endpoint)


def test_confirmation_depth(kit, tmp_path):
    recorder = Recorder()
    follower = _follower(kit, tmp_path / "f.sqlite", recorder, confirmations=3)
    result = _register(kit, kit.roles.provider)
    # The deployment's configuration events are 3+ blocks deep by now; the registration is not.
    assert follower.poll_once() == len(recorder.calls) > 0
    assert not [e for e in recorder.calls if isinstance(e, ProviderRegistered)]
    assert follower.cursor.block == kit.w3.eth.block_number - 3
    mine(kit.w3, 2)
    follower.poll_once()
    assert not [e for e in recorder.calls if isinstance(e, ProviderRegistered)]
    mine(kit.w3, 1)
    follower.poll_once()
    registered = [e for e in recorder.calls if isinstance(e, ProviderRegistered)]
    assert [e.meta.tx_hash for e in registered] == [result.tx_hash]
    assert registered[0].meta.block_number == kit.w3.eth.block_number - 3
    follower.close()


def test_events_in_chain_order_from_the_start_block(kit, tmp_path):
    recorder = Recorder()
    follower = _follower(kit, tmp_path / "f.sqlite", recorder)
    follower.poll_once()
    names = [e.name for e in recorder.calls]
    # The deployment: the constructor's events, one GpuClassSet per class, then the overrides.
    assert names[0] == "OwnershipTransferred" and {"CommitteeChanged", "GpuClassSet", "ParameterChanged"} <= set(names)
    positions = [(e.meta.block_number, e.meta.log_index) for e in recorder.calls]
    assert positions == sorted(positions)
    assert all(p[0] >= kit.deployment.block for p in positions)
    follower.close()


def test_cursor_survives_a_restart_without_repeats(kit, tmp_path):
    db_path = tmp_path / "f.sqlite"
    first = Recorder()
    follower = _follower(kit, db_path, first)
    _register(kit, kit.roles.provider)
    delivered = follower.poll_once()
    assert delivered == len(first.calls) > 0
    cursor = follower.cursor
    follower.close()

    second = Recorder()
    restarted = _follower(kit, db_path, second)
    assert restarted.cursor == cursor
    assert restarted.poll_once() == 0 and second.calls == []
    _register(kit, kit.roles.provider2, "http://127.0.0.1:8701")
    restarted.poll_once()
    assert [e.name for e in second.calls if isinstance(e, ProviderRegistered)] == ["ProviderRegistered"]
    keys = [row[:2] for row in Recorder.stored(db_path)]
    assert len(keys) == len(set(keys)) == len(first.calls) + len(second.calls)
    restarted.close()


def test_a_failing_handler_rolls_back_and_resumes_without_repeats(kit, tmp_path):
    db_path = tmp_path / "f.sqlite"
    client = kit.roles.client
    kit.fund(client)
    created = kit.market(client).create_job(CPU_DEV, 1, PRICE, 600, b"\x01" * 32, kit.now() + 3600)
    cancelled = kit.market(client).cancel_job(created.event(JobCreated).job_id)
    poison = cancelled.event(JobCancelled).key
    recorder = Recorder(fail_on={poison})
    follower = _follower(kit, db_path, recorder, events=frozenset({"JobCreated", "JobCancelled"}))
    with pytest.raises(HandlerError) as caught:
        follower.poll_once()
    assert caught.value.event.key == poison
    # JobCreated committed; the failed JobCancelled left nothing (its INSERT rolled back).
    assert [row[2] for row in Recorder.stored(db_path)] == ["JobCreated"]
    assert follower.cursor.block < cancelled.block_number

    recorder.fail_on.clear()
    assert follower.poll_once() == 1
    assert [row[2] for row in Recorder.stored(db_path)] == ["JobCreated", "JobCancelled"]
    assert [e.name for e in recorder.calls] == ["JobCreated", "JobCancelled", "JobCancelled"]
    assert follower.cursor.block == kit.w3.eth.block_number
    follower.close()


def test_ranges_are_bounded(kit, tmp_path):
    follower = _follower(kit, tmp_path / "f.sqlite", Recorder(), max_block_range=3, max_ranges_per_poll=1)
    mine(kit.w3, 10)
    start = follower.cursor.block
    follower.poll_once()
    assert follower.cursor.block == start + 3
    follower.poll_once()
    assert follower.cursor.block == start + 6
    follower.close()


def test_event_filter(kit, tmp_path):
    recorder = Recorder()
    follower = _follower(kit, tmp_path / "f.sqlite", recorder, events=frozenset({"ProviderRegistered"}))
    _register(kit, kit.roles.provider)
    follower.poll_once()
    assert [e.name for e in recorder.calls] == ["ProviderRegistered"]
    with pytest.raises(ValueError, match="unknown events"):
        _follower(kit, tmp_path / "g.sqlite", recorder, events=frozenset({"NoSuchEvent"}))
    follower.close()


def test_run_stops_when_asked(kit, tmp_path):
    recorder = Recorder()
    follower = _follower(kit, tmp_path / "f.sqlite", recorder)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    _register(kit, kit.roles.provider)
    deadline = time.monotonic() + 10
    while not any(isinstance(e, ProviderRegistered) for e in recorder.calls) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert any(isinstance(e, ProviderRegistered) for e in recorder.calls)
    follower.close()


# --------------------------------------------------------------------------- a real node


def test_follows_through_an_anvil_restart(anvil, anvil_kit, tmp_path):
    db_path = tmp_path / "f.sqlite"
    recorder = Recorder()
    follower = _follower(anvil_kit, db_path, recorder, retry=RetryPolicy(attempts=12, base_delay=0.05, max_delay=0.5))
    follower.poll_once()
    before = len(recorder.calls)
    assert before > 0

    anvil.stop()
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("delivered", follower.poll_once()))
    thread.start()
    time.sleep(0.3)  # the poll is now retrying against a closed port
    assert thread.is_alive()
    anvil.start()
    thread.join(timeout=20)
    assert not thread.is_alive() and outcome["delivered"] == 0

    _register(anvil_kit, anvil_kit.roles.provider)
    follower.poll_once()
    assert [e.name for e in recorder.calls[before:]].count("ProviderRegistered") == 1
    keys = [row[:2] for row in Recorder.stored(db_path)]
    assert len(keys) == len(set(keys))
    follower.close()


def test_gives_up_when_the_node_stays_down(anvil, anvil_kit, tmp_path):
    follower = _follower(anvil_kit, tmp_path / "f.sqlite", Recorder())
    anvil.stop()
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="unreachable after 3 attempts"):
        follower.poll_once()
    assert time.monotonic() - started < 5
    follower.close()


def test_refuses_a_different_chain(anvil, anvil_kit, tmp_path):
    db_path = tmp_path / "f.sqlite"
    follower = _follower(anvil_kit, db_path, Recorder())
    follower.poll_once()
    follower.close()
    head = anvil_kit.w3.eth.block_number
    # A node restarted without its state serves a new chain with the same id.
    anvil.stop()
    anvil.state_path.unlink()
    anvil.start()
    fresh_w3 = connect(anvil.url)
    mine(fresh_w3, head + 5)
    config = FollowerConfig(confirmations=0, retry=FAST_RETRY)
    stale = EventFollower(
        fresh_w3,
        anvil_kit.deployment.market,
        db_path,
        Recorder(),
        config=config,
        abi=anvil_kit.artifacts["GpuMarket"].abi,
    )
    with pytest.raises(ChainMismatch, match="when it was processed"):
        stale.poll_once()
    stale.close()
