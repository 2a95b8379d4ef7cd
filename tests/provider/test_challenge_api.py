"""The challenge endpoints over real HTTP against a real gpumarket.measure Verifier (cpu-dev):
an honest answer passes; replays, wrong sizes, oversized and malformed messages are refused."""

from __future__ import annotations

import threading
import time

import pytest

from gpumarket.measure.classes import CPU_DEV, class_by_name
from gpumarket.measure.messages import TURN_HEADER, Challenge, Commitment, Opening, OpeningRequest
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


def take_turn(served, headers=None):
    response = served.http.request("POST", "/challenge/turn", b"", headers or {})
    assert response.status == 200, response.body
    return response.json()["turn"]


def test_a_challenge_without_a_turn_is_busy_while_a_turn_is_held(served):
    challenge = Verifier().issue(CPU_DEV)
    turn = take_turn(served)  # another oracle holds the prover
    response = post(served, "/challenge", challenge.to_bytes())
    expect(response, 503, "busy")
    assert response.headers["retry-after"] == "1"
    # Nothing was recorded: the holder's challenge goes through, then the same challenge too.
    other = Verifier().issue(CPU_DEV)
    answered = served.http.request("POST", "/challenge", other.to_bytes(), {TURN_HEADER: turn})
    assert answered.status == 200, answered.body
    assert post(served, "/challenge", challenge.to_bytes()).status == 200


def test_a_turn_is_used_once_and_an_unknown_one_is_refused(served):
    turn = take_turn(served)
    first, second = Verifier().issue(CPU_DEV), Verifier().issue(CPU_DEV)
    assert served.http.request("POST", "/challenge", first.to_bytes(), {TURN_HEADER: turn}).status == 200
    expect(served.http.request("POST", "/challenge", second.to_bytes(), {TURN_HEADER: turn}), 409, "turn_expired")
    expect(served.http.request("POST", "/challenge", second.to_bytes(), {TURN_HEADER: "00" * 16}), 409, "turn_expired")


def test_oracles_waiting_for_turns_are_served_in_order_and_none_starves(served):
    """Three oracles at once: each gets its turn, first come first served, and each whole
    challenge passes; the waiting for a turn happens before the verifier's clock starts."""
    served.agent.challenges.turn_valid_s = 30.0  # a held turn must not lapse on a loaded machine
    first = take_turn(served)  # held while the others queue behind it
    granted: list[str] = []
    verdicts: list[object] = []

    def oracle(name: str) -> None:
        turn = take_turn(served)
        granted.append(name)
        verifier = Verifier()
        challenge = verifier.issue(CPU_DEV)
        response = served.http.request("POST", "/challenge", challenge.to_bytes(), {TURN_HEADER: turn})
        assert response.status == 200, response.body
        request = verifier.receive_commitment(Commitment.parse(response.body))
        opened = post(served, "/challenge/open", request.to_bytes())
        verdicts.append(verifier.check_opening(Opening.parse(opened.body)).reason)

    threads = []
    for name in ("a", "b"):
        threads.append(threading.Thread(target=oracle, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 30
        while len(served.agent.challenges._queue) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.01)  # "a" queues before "b"
    assert not granted  # both wait while the first turn is held
    challenge = Verifier().issue(CPU_DEV)
    assert served.http.request("POST", "/challenge", challenge.to_bytes(), {TURN_HEADER: first}).status == 200
    for thread in threads:
        thread.join(120)
    assert granted == ["a", "b"]
    assert len(verdicts) == 2 and all(reason in (None, "below_floor") for reason in verdicts)  # valid work


def test_an_unused_turn_lapses_and_the_next_oracle_goes(served):
    served.agent.challenges.turn_valid_s = 0.3
    take_turn(served)  # never used
    started = time.monotonic()
    assert take_turn(served)  # granted once the first lapsed
    assert time.monotonic() - started < served.agent.challenges.max_wait_s


def test_a_turn_request_gives_up_with_503_when_the_queue_does_not_move(served):
    served.agent.challenges.turn_valid_s = 30.0
    served.agent.challenges.max_wait_s = 0.3
    take_turn(served)
    expect(served.http.request("POST", "/challenge/turn", b""), 503, "busy")


def test_a_turn_request_waits_no_longer_than_its_oracle_does(served):
    # The oracle says how long it waits for the answer; a request it would have abandoned must
    # not take a turn later (it would hold the prover for nobody). The agent's own limit is 20 s.
    served.agent.challenges.turn_valid_s = 30.0
    take_turn(served)
    started = time.monotonic()
    body = b'{"max_wait_s": 0.3}'
    expect(served.http.request("POST", "/challenge/turn", body, {"Content-Type": "application/json"}), 503, "busy")
    assert time.monotonic() - started < served.agent.challenges.max_wait_s / 2


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{", 400, "malformed_json"),
        (b"[]", 400, "invalid_field"),
        (b'{"max_wait_s": 1, "x": 2}', 400, "invalid_field"),
        (b'{"max_wait_s": 0}', 400, "invalid_field"),
        (b'{"max_wait_s": true}', 400, "invalid_field"),
        (b'{"max_wait_s": "1"}', 400, "invalid_field"),
        (b'{"max_wait_s": 1e400}', 400, "invalid_field"),
        (b'{"max_wait_s": ' + b"1" * 80 + b"}", 413, "body_too_large"),
    ],
)
def test_a_turn_request_body_other_than_its_wait_is_refused(served, body, status, error):
    expect(served.http.request("POST", "/challenge/turn", body, {"Content-Type": "application/json"}), status, error)
    assert take_turn(served)  # nothing was queued by the refused request


def test_an_out_of_range_opening_is_422(served):
    verifier = Verifier()
    challenge = verifier.issue(CPU_DEV)
    assert post(served, "/challenge", challenge.to_bytes()).status == 200
    request = OpeningRequest(challenge_id=challenge.challenge_id, tiles=[challenge.total_tiles + 5])
    assert "outside" in expect(post(served, "/challenge/open", request.to_bytes()), 422, "cannot_open")
    assert served.http.healthy()


def test_rounds_scale_with_the_agents_gpu_count(store, runner, jobs, provider_account):
    from gpumarket.agentapi.errors import AgentError
    from gpumarket.measure.provers import make_prover
    from gpumarket.provider.agent import AgentConfig, ProviderAgent

    from .support import CHAIN_ID, MARKET

    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET, gpus=(0, 1))
    agent = ProviderAgent(config, store, runner, jobs, make_prover("numpy"))
    agent.challenges._check_sizes(Verifier().issue(CPU_DEV, gpu_count=2))  # two GPUs' worth of rounds: accepted
    with pytest.raises(AgentError) as caught:
        agent.answer_challenge(Verifier().issue(CPU_DEV, gpu_count=3).to_bytes())
    assert (caught.value.status, caught.value.code) == (422, "challenge_refused")


def test_the_oracles_challenge_takes_a_turn_and_a_lapsed_turn_is_busy_not_an_error(served):
    """gpumarket.oracle.challenge against a real agent: with turns the challenge goes through; when
    every turn lapses before the challenge comes (a late oracle), it asks again and, past its
    budget, gives up as no answer (a 409 turn_expired is never a refusal of the provider's)."""
    from gpumarket.oracle.challenge import ChallengeConfig, challenge_provider

    config = ChallengeConfig(request_timeout_s=10.0, turn_give_up_s=1.0, busy_wait_s=0.05)
    outcome = challenge_provider(served.server.url, CPU_DEV.id, 1, config=config)
    assert not outcome.unreachable and outcome.verdict is not None and outcome.measured_gops > 0, outcome.error
    served.agent.challenges.turn_valid_s = 0.0  # every granted turn has lapsed by the time the challenge comes
    outcome = challenge_provider(served.server.url, CPU_DEV.id, 1, config=config)
    assert outcome.unreachable and outcome.verdict is None
    assert "busy" in outcome.error and "turn_expired" in outcome.error


def test_the_job_loops_challenge_gives_up_a_held_prover_as_busy_then_goes_through(served):
    """With turn_wait_s (the job loop's setting) a challenge that finds the prover held by another
    oracle's turn comes back busy, neither an answer nor an unanswered try, after about that wait
    (not turn_give_up_s); once the prover is free it goes through."""
    from gpumarket.oracle.challenge import ChallengeConfig, challenge_provider

    served.agent.challenges.turn_valid_s = 30.0  # the other oracle's turn holds the prover meanwhile
    held = take_turn(served)
    config = ChallengeConfig(request_timeout_s=10.0, turn_give_up_s=60.0, turn_wait_s=1.5, busy_wait_s=0.05)
    started = time.monotonic()
    outcome = challenge_provider(served.server.url, CPU_DEV.id, 1, config=config)
    assert outcome.busy and not outcome.unreachable and outcome.verdict is None, outcome
    assert time.monotonic() - started < 30  # gave up after turn_wait_s, not turn_give_up_s
    # The other oracle's challenge comes and frees the prover.
    other = Verifier().issue(CPU_DEV)
    assert served.http.request("POST", "/challenge", other.to_bytes(), {TURN_HEADER: held}).status == 200
    outcome = challenge_provider(served.server.url, CPU_DEV.id, 1, config=config)
    assert not outcome.busy and outcome.verdict is not None and outcome.measured_gops > 0, outcome.error
