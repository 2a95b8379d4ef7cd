"""set_gpu_class: class 0 reserved, floor bounded, logged, a zero floor removes the class."""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import COMPLETED, CPU_DEV, HOUR, PRICE
from unit.expectations import emitted

from .governance_parameters import MAX_AMOUNT

NEW_CLASS = 7


@pytest.mark.parametrize("floor", [0, 1, MAX_AMOUNT])
def test_class_id_zero_is_reserved(market, owner, floor: int):
    with ape.reverts("governance: class id zero"):
        market.set_gpu_class(0, floor, sender=owner)


def test_floor_above_max_amount_reverts(market, owner):
    with ape.reverts("governance: floor out of bounds"):
        market.set_gpu_class(NEW_CLASS, MAX_AMOUNT + 1, sender=owner)
    assert market.class_floor(NEW_CLASS) == 0


@pytest.mark.parametrize("gpu_class, floor", [(NEW_CLASS, 1), (NEW_CLASS, MAX_AMOUNT), (2**16 - 1, 123_456)])
def test_adds_class_and_logs_it(market, owner, gpu_class: int, floor: int):
    tx = market.set_gpu_class(gpu_class, floor, sender=owner)
    assert market.class_floor(gpu_class) == floor
    assert emitted(tx, market.GpuClassSet) == [{"gpu_class": gpu_class, "floor_per_gpu": floor}]
    assert len(tx.events) == 1


def test_changes_floor_of_listed_class_only(market, owner):
    other_floors = {gpu_class: market.class_floor(gpu_class) for gpu_class in (1, 2, NEW_CLASS)}
    market.set_gpu_class(CPU_DEV, 42, sender=owner)
    assert market.class_floor(CPU_DEV) == 42
    assert {c: market.class_floor(c) for c in other_floors} == {**other_floors, CPU_DEV: 42}


def test_zero_floor_removes_class_for_registrations_and_new_jobs(market, owner, provider, client, chain, funded):
    tx = market.set_gpu_class(CPU_DEV, 0, sender=owner)
    assert emitted(tx, market.GpuClassSet) == [{"gpu_class": CPU_DEV, "floor_per_gpu": 0}]
    assert market.class_floor(CPU_DEV) == 0
    with ape.reverts("governance: unknown gpu class"):
        market.register(CPU_DEV, 1, PRICE, "http://p", sender=provider)
    with ape.reverts("governance: unknown gpu class"):
        market.create_job(
            CPU_DEV, 1, PRICE, HOUR, b"\x5e" * 32, provider, chain.pending_timestamp + HOUR, sender=client
        )


def test_running_job_of_removed_class_still_settles(market, owner, client, provider, running_job, settle):
    job_id = running_job(client, provider)
    market.set_gpu_class(CPU_DEV, 0, sender=owner)
    settle(job_id, Outcome.COMPLETED, gpu_seconds=60)
    assert market.get_job(job_id).state == COMPLETED
