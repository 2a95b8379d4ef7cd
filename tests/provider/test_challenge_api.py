"""The challenge endpoints over real HTTP against a real gpumarket.measure Verifier (cpu-dev):
an honest answer passes; replays, wrong sizes, oversized and malformed messages are refused."""

from __future__ import annotations

import pytest

from gpumarket.measure.classes import CPU_DEV, class_by_name
from gpumarket.measure.messages import Challenge, Commitment, Opening, OpeningRequest
from gpumarket.measure.verifier import Verifier


def post(served, path, message_bytes):
    return served.http.request("POST", path, message_bytes, {"Content-Type": "application/json"})


def expect(response, status, error):
    assert (response.status, response.error) == (status, error), response.body
    return response.json()["detail"]


def run_challenge(served, verifier: Verifier):
    """One whole challenge: issue, POST, receive, POST the opening request, check."""
    rtt = verifier.measure_rtt(lambda: served.http.request("GET", "/health"))
    challenge = verifier.issue(CPU_DEV, rtt_seconds=rtt)
    response = post(served, "/challenge", challenge.to_bytes())
    assert response.status == 200, response.body
    request = verifier.receive_commitment(Commitment.parse(response.body))
    response = post(served, "/challenge/open", request.to_bytes())
    assert response.status == 200, response.body
    return challenge, request, verifier.check_opening(Opening.parse(response.body))


def test_an_honest_agent_passes_a_verifier_over_http(served):
    verifier = Verifier()
    challenge, _, verdict = run_challenge(served, verifier)
    assert verdict.passed, verdict.to_dict()
    assert verdict.throughput_ops_per_second >= CPU_DEV.floor_ops_per_second
    assert served.store.challenge(challenge.challenge_id).opened_at is not None


def test_replayed_challenges_and_openings_are_409(served):
    verifier = Verifier()
    challenge, request, _ = run_challenge(served, verifier)
    detail = expect(post(served, "/challenge", challenge.to_bytes()), 409, "replayed_challenge")
    assert challenge.challenge_id.hex() in detail
    expect(post(served, "/challenge/open", request.to_bytes()), 409, "replayed_challenge")
    unknown = OpeningRequest(challenge_id=b"\x01" * 16, tiles=[0])
    expect(post(served, "/challenge/open", unknown.to_bytes()), 404, "unknown_challenge")
    assert served.http.healthy()
    # The agent still answers fresh challenges.
    assert run_challenge(served, verifier)[2].passed


def test_challenges_of_other_sizes_are_refused_before_any_work(served):
    verifier = Verifier()
    big = verifier.issue(class_by_name("h100-sxm"))
    detail = expect(post(served, "/challenge", big.to_bytes()), 422, "challenge_refused")
    assert "cpu-dev" in detail
    fields = verifier.issue(CPU_DEV).model_dump()
    for change in (
        {"m": CPU_DEV.m * 2},
        {"n": CPU_DEV.n * 4},
        {"rounds": CPU_DEV.rounds * 2},
        {"rounds": CPU_DEV.rounds + 1},
        {"tile": 32},
    ):
        forged = Challenge.model_validate(fields | change | {"challenge_id": b"\x02" * 16})
        detail = expect(post(served, "/challenge", forged.to_bytes()), 422, "challenge_refused")
        assert next(iter(change)) in detail
    # Refused challenges were not recorded: the same id can still be answered once.
    assert served.store.challenge(b"\x02" * 16) is None


def test_oversized_malformed_and_wrong_messages(served):
    challenge = Verifier().issue(CPU_DEV)
    detail = expect(
        post(served, "/challenge", challenge.to_bytes() + b" " * Challenge.MAX_BYTES), 413, "body_too_large"
    )
    assert str(Challenge.MAX_BYTES) in detail
    expect(post(served, "/challenge/open", b"[" * (OpeningRequest.MAX_BYTES + 1)), 413, "body_too_large")
    expect(post(served, "/challenge", b'{"type": "challenge", '), 400, "malformed_json")
    expect(post(served, "/challenge", b"\xff\xfe"), 400, "malformed_json")
    commitment = Commitment(challenge_id=challenge.challenge_id, root=b"\x00" * 32)
    detail = expect(post(served, "/challenge", commitment.to_bytes()), 422, "invalid_message")
    assert "wrong type" in detail
    wrong_version = challenge.to_bytes().replace(b'"version":1', b'"version":2')
    assert "unsupported version" in expect(post(served, "/challenge", wrong_version), 422, "invalid_message")
    expect(post(served, "/challenge/open", b'{"type": "opening_request", "version": 1}'), 422, "invalid_message")
    assert served.http.healthy()


def test_a_busy_agent_answers_503_instead_of_queueing(served):
    challenge = Verifier().issue(CPU_DEV)
    with served.agent._prover_lock:  # as if another challenge were being computed
        response = post(served, "/challenge", challenge.to_bytes())
    expect(response, 503, "busy")
    assert response.headers["retry-after"] == "1"
    # Nothing was recorded, so the same challenge can be answered now.
    assert post(served, "/challenge", challenge.to_bytes()).status == 200


def test_an_out_of_range_opening_is_422(served):
    verifier = Verifier()
    challenge = verifier.issue(CPU_DEV)
    assert post(served, "/challenge", challenge.to_bytes()).status == 200
    request = OpeningRequest(challenge_id=challenge.challenge_id, tiles=[challenge.total_tiles + 5])
    assert "outside" in expect(post(served, "/challenge/open", request.to_bytes()), 422, "cannot_open")
    assert served.http.healthy()


def test_rounds_scale_with_the_agents_gpu_count(store, runner, jobs, provider_account):
    from gpumarket.measure.provers import make_prover
    from gpumarket.provider.agent import AgentConfig, ProviderAgent
    from gpumarket.provider.errors import AgentError

    from .support import CHAIN_ID, MARKET

    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET, gpus=(0, 1))
    agent = ProviderAgent(config, store, runner, jobs, make_prover("numpy"))
    agent._check_sizes(Verifier().issue(CPU_DEV, gpu_count=2))  # two GPUs' worth of rounds: accepted
    with pytest.raises(AgentError) as caught:
        agent.answer_challenge(Verifier().issue(CPU_DEV, gpu_count=3).to_bytes())
    assert (caught.value.status, caught.value.code) == (422, "challenge_refused")
