"""The claim checks register and update_provider share: a listed class, 1 .. 1,024 GPUs,
a price of 1 .. 2**96 - 1 per GPU-second, a 1 .. 128 character endpoint.

Both functions take the same claim, so every case runs against both.
"""

from __future__ import annotations

from collections.abc import Callable

import ape
import pytest

from helpers.constants import CPU_DEV, H100, PRICE

MAX_GPUS = 1_024
MAX_PRICE = 2**96 - 1
MAX_ENDPOINT = 128
UNLISTED_CLASS = 999
# A valid claim (the shared `register` builder's default); each case changes one field.
DEFAULT_CLAIM = {"gpu_class": CPU_DEV, "gpu_count": 1, "price": PRICE, "endpoint": "http://127.0.0.1:8700"}


def claim(**changes) -> dict:
    return {**DEFAULT_CLAIM, **changes}


REJECTED = [
    pytest.param(claim(gpu_class=UNLISTED_CLASS), "governance: unknown gpu class", id="unknown-class"),
    pytest.param(claim(gpu_class=0), "governance: unknown gpu class", id="class-0"),
    pytest.param(claim(gpu_count=0), "registry: gpu count out of range", id="gpu-count-0"),
    pytest.param(claim(gpu_count=MAX_GPUS + 1), "registry: gpu count out of range", id="gpu-count-1025"),
    pytest.param(claim(price=0), "registry: price out of range", id="price-0"),
    pytest.param(claim(price=MAX_PRICE + 1), "registry: price out of range", id="price-2**96"),
    pytest.param(claim(endpoint=""), "registry: empty endpoint", id="empty-endpoint"),
]

ACCEPTED = [
    pytest.param(claim(gpu_class=H100), id="other-listed-class"),
    pytest.param(claim(gpu_count=1), id="gpu-count-1"),
    pytest.param(claim(gpu_count=MAX_GPUS), id="gpu-count-1024"),
    pytest.param(claim(price=1), id="price-1"),
    pytest.param(claim(price=MAX_PRICE), id="price-2**96-1"),
    pytest.param(claim(endpoint="h"), id="endpoint-1-char"),
    pytest.param(claim(endpoint="https://" + "e" * (MAX_ENDPOINT - 8)), id="endpoint-128-chars"),
]


@pytest.fixture(params=["register", "update_provider"])
def submit(request, market, provider, register) -> Callable[[dict], object]:
    """Submits a claim through one of the two functions (update_provider after a default registration)."""
    if request.param == "update_provider":
        register(provider)

    def send(new_claim: dict):
        return getattr(market, request.param)(
            new_claim["gpu_class"], new_claim["gpu_count"], new_claim["price"], new_claim["endpoint"], sender=provider
        )

    return send


@pytest.mark.parametrize("new_claim, reason", REJECTED)
def test_rejects_claim_out_of_bounds(submit, market, provider, new_claim: dict, reason: str):
    before = market.providers(provider)
    with ape.reverts(reason):
        submit(new_claim)
    assert market.providers(provider) == before


@pytest.mark.parametrize("new_claim", ACCEPTED)
def test_accepts_claim_at_the_bounds(submit, market, provider, new_claim: dict):
    submit(new_claim)
    record = market.providers(provider)
    assert (record.gpu_class, record.gpu_count, record.price_per_gpu_second, record.endpoint) == (
        new_claim["gpu_class"],
        new_claim["gpu_count"],
        new_claim["price"],
        new_claim["endpoint"],
    )


def test_endpoint_over_128_chars_is_rejected_by_the_abi_decoder(submit, market, provider):
    before = market.providers(provider)
    with ape.reverts() as revert:
        submit(claim(endpoint="e" * (MAX_ENDPOINT + 1)))
    assert revert.value.message in ("", "0x")  # String[128] bound, no reason string
    assert market.providers(provider) == before
