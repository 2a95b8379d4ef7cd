"""CommitteeSync: a fresh store learns the chain's committee at startup, then follows
CommitteeChanged events through the EventFollower. Runs on its own deployment (it changes
the committee)."""

from __future__ import annotations

from pathlib import Path

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.follower import EventFollower, FollowerConfig
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.sync import CommitteeSync

from .conftest import PARAMS


def test_sync_loads_current_then_follows_changes(tmp_path: Path) -> None:
    w3 = connect(EMBEDDED)
    deployer = test_account(0)
    deployment = deploy_market_web3(w3, deployer, load_params(PARAMS), artifacts=load_artifacts())
    market = deployment.market_at(w3, signer=deployer)
    key = test_oracle(0)
    with DecisionStore.open(tmp_path / "oracle.db", market.domain, key.address) as store:
        sync = CommitteeSync(store, market)
        info = sync.load_current()
        assert (info.epoch, info.threshold) == (1, 2)
        assert set(info.members) == set(market.members())

        new_members = [test_oracle(i).address for i in range(3)] + [test_account(8).address]
        market.set_committee(new_members, 3)
        follower = EventFollower(
            w3,
            market.address,
            tmp_path / "follower.db",
            sync.handle,
            start_block=deployment.block,
            config=FollowerConfig(confirmations=0),
        )
        try:
            follower.poll_once()
            follower.poll_once()  # an event already handled is not handed out again; harmless anyway
        finally:
            follower.close()
        current = store.current_committee()
        assert current is not None
        assert current.epoch == market.epoch() == 2
        assert current.threshold == 3 and set(current.members) == set(new_members)
        # Startup read again (a restart): idempotent.
        assert sync.load_current() == current
