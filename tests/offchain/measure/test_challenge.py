"""The challenge end to end: an honest prover passes; every cheat and misuse fails, precisely."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

import gpumarket.measure.matrices as matrices
from gpumarket.measure.classes import CPU_DEV, GpuClass
from gpumarket.measure.fingerprint import fingerprint_keys, fingerprint_tile
from gpumarket.measure.layout import VALUE_DTYPE, tile_position
from gpumarket.measure.local import measure_detection, run_round_trip
from gpumarket.measure.messages import Commitment, Opening, OpeningRequest
from gpumarket.measure.provers import NumpyProver, ProverError
from gpumarket.measure.provers.cheats import FreivaldsProver, SkippingProver, skipping_pass_probability
from gpumarket.measure.verifier import ChallengeRejected, Reason, Verifier

# Small enough for hundreds of runs a second: 2 rounds of 64 x 64 x 64, 128 tiles, 3 opened.
TINY = GpuClass(
    id=900, name="test-tiny", floor_gops_per_gpu=1, m=64, n=64, p=64, rounds=2, tile=8, k=3, tiles_per_leaf=4
)
# Opens more tiles, so that a single bad tile is found for sure.
SMALL = GpuClass(
    id=901, name="test-small", floor_gops_per_gpu=1, m=128, n=256, p=128, rounds=2, tile=16, k=128, tiles_per_leaf=8
)


class FakeClock:
    """The verifier's clock in tests: time moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answer(
    verifier: Verifier, clock: FakeClock, prover: NumpyProver, gpu_class: GpuClass = SMALL, seconds: float = 0.001
):
    """Run a challenge up to the opening; the commitment arrives ``seconds`` after the challenge."""
    challenge = verifier.issue(gpu_class)
    commitment = prover.commit(challenge)
    clock.now += seconds
    request = verifier.receive_commitment(commitment)
    return challenge, commitment, request, prover.open(request)


def _with_tile(opening: Opening, position: int, **changes) -> Opening:
    tiles = list(opening.tiles)
    tiles[position] = tiles[position].model_copy(update=changes)
    return opening.model_copy(update={"tiles": tiles})


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def verifier(clock):
    return Verifier(clock=clock)


def test_an_honest_prover_passes_and_the_verdict_says_why(verifier, clock):
    challenge = verifier.issue(SMALL)
    prover = NumpyProver()
    commitment = prover.commit(challenge)
    clock.now += 0.001  # the commitment arrives 1 ms after the challenge left
    verdict = verifier.check_opening(prover.open(verifier.receive_commitment(commitment)))
    assert verdict.passed and verdict.reason is None and verdict.detail == ""
    assert verdict.elapsed_seconds == pytest.approx(0.001)
    assert verdict.throughput_ops_per_second == pytest.approx(challenge.ops / 0.001)
    assert verdict.required_ops_per_second == 10**9
    assert verdict.to_dict()["reason"] is None


def test_the_opened_tiles_are_distinct_in_range_and_independent_of_the_root():
    def request_for(root: bytes) -> list[int]:
        source = random.Random(11)
        verifier = Verifier(randomness=random.Random(5), seed_source=source.randbytes)
        challenge = verifier.issue(SMALL)
        return verifier.receive_commitment(Commitment(challenge_id=challenge.challenge_id, root=root)).tiles

    tiles = request_for(b"\x01" * 32)
    assert tiles == request_for(b"\x02" * 32)  # another root, the same draw
    assert len(set(tiles)) == len(tiles) == SMALL.k
    assert all(0 <= t < SMALL.tiles_per_round * SMALL.rounds for t in tiles)


def test_values_that_match_their_commitment_but_not_the_product_are_rejected(verifier):
    """A prover that commits to a wrong tile and opens it consistently fails the recomputation."""

    class WrongTileProver(NumpyProver):
        def round_fingerprints(self, challenge):
            for round_index, prints in super().round_fingerprints(challenge):
                if round_index == 0:
                    prints = prints.copy()
                    prints[0] = fingerprint_tile(
                        self.tile_values(challenge, 0), fingerprint_keys(challenge.seed, challenge.tile)
                    )
                yield round_index, prints

        def tile_values(self, challenge, index):
            values = super().tile_values(challenge, index)
            if index == 0:
                values = values.copy()
                values[2, 3] += 7
            return values

    challenge = verifier.issue(GpuClass(**{**SMALL.__dict__, "k": SMALL.tiles_per_round * SMALL.rounds}))
    prover = WrongTileProver()
    verdict = verifier.check_opening(prover.open(verifier.receive_commitment(prover.commit(challenge))))
    assert verdict.reason is Reason.WRONG_VALUES
    assert verdict.detail.startswith(
        "tile 0 (round 0, tile row 0, tile column 0): 1 of 256 values differ from the product, first at (2, 3): got "
    )


def test_values_that_do_not_match_the_committed_fingerprint_are_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    values = np.frombuffer(opening.tiles[1].values, dtype=VALUE_DTYPE).copy()
    values[0] -= 1
    verdict = verifier.check_opening(_with_tile(opening, 1, values=values.tobytes()))
    assert verdict.reason is Reason.WRONG_FINGERPRINT
    assert "differs from the one committed in leaf" in verdict.detail


def test_a_wrong_proof_is_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    proof = list(opening.tiles[0].proof)
    proof[0] = bytes(32)
    verdict = verifier.check_opening(_with_tile(opening, 0, proof=proof))
    assert verdict.reason is Reason.WRONG_PROOF and verdict.detail.endswith("proof does not lead to the committed root")
    assert verdict.throughput_ops_per_second is None


def test_a_short_proof_is_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    verdict = verifier.check_opening(_with_tile(opening, 0, proof=list(opening.tiles[0].proof[:-1])))
    assert verdict.reason is Reason.WRONG_PROOF and "a tree of 16 leaves needs 4" in verdict.detail


def test_a_tampered_leaf_is_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    leaf = bytearray(opening.tiles[0].leaf_fingerprints)
    slot = tile_position(verifier._challenges[opening.challenge_id].challenge, opening.tiles[0].index).slot
    leaf[8 * ((slot + 1) % 8)] ^= 1  # another tile's fingerprint in the same leaf
    verdict = verifier.check_opening(_with_tile(opening, 0, leaf_fingerprints=bytes(leaf)))
    assert verdict.reason is Reason.WRONG_PROOF


def test_malformed_tiles_are_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    verdict = verifier.check_opening(_with_tile(opening, 0, values=bytes(16)))
    assert verdict.reason is Reason.MALFORMED_TILE and verdict.detail.endswith("16 value bytes, expected 1024")


def test_opening_other_tiles_than_requested_is_rejected(verifier, clock):
    _, _, request, opening = _answer(verifier, clock, NumpyProver())
    swapped = opening.model_copy(update={"tiles": list(reversed(opening.tiles))})
    verdict = verifier.check_opening(swapped)
    assert verdict.reason is Reason.WRONG_TILES and "are not the requested" in verdict.detail


def test_a_root_changed_after_the_indices_are_known_is_rejected(verifier):
    challenge = verifier.issue(SMALL)
    verifier.receive_commitment(Commitment(challenge_id=challenge.challenge_id, root=b"\x01" * 32))
    with pytest.raises(ChallengeRejected, match="root_changed: a second commitment with another root") as caught:
        verifier.receive_commitment(Commitment(challenge_id=challenge.challenge_id, root=b"\x02" * 32))
    assert caught.value.reason is Reason.ROOT_CHANGED
    # The challenge is over and failed: nothing more is accepted for it.
    assert verifier._challenges[challenge.challenge_id].verdict.reason is Reason.ROOT_CHANGED
    with pytest.raises(ChallengeRejected, match="replayed: .* was already settled"):
        verifier.receive_commitment(Commitment(challenge_id=challenge.challenge_id, root=b"\x01" * 32))


def test_an_opening_that_restates_another_root_is_rejected(verifier, clock):
    _, _, _, opening = _answer(verifier, clock, NumpyProver())
    verdict = verifier.check_opening(opening.model_copy(update={"root": b"\x07" * 32}))
    assert verdict.reason is Reason.ROOT_CHANGED


def test_a_replayed_commitment_or_opening_is_rejected(verifier, clock):
    challenge, commitment, request, opening = _answer(verifier, clock, NumpyProver())
    with pytest.raises(ChallengeRejected, match="replayed: .* was already answered"):
        verifier.receive_commitment(commitment)
    assert verifier.check_opening(opening).passed
    with pytest.raises(ChallengeRejected, match="replayed: .* was already settled"):
        verifier.check_opening(opening)
    with pytest.raises(ChallengeRejected, match="replayed: .* was already settled"):
        verifier.receive_commitment(commitment)


def test_a_repeated_seed_is_never_issued():
    verifier = Verifier(seed_source=lambda size: bytes(size))
    verifier.issue(TINY)
    with pytest.raises(ChallengeRejected, match="replayed: the seed source repeated a seed"):
        verifier.issue(TINY)


def test_answers_to_unknown_or_unfinished_challenges_are_refused(verifier):
    with pytest.raises(
        ChallengeRejected, match="unknown_challenge: challenge 00000000000000000000000000000000 was never issued here"
    ):
        verifier.receive_commitment(Commitment(challenge_id=bytes(16), root=bytes(32)))
    challenge = verifier.issue(TINY)
    prover = NumpyProver()
    prover.commit(challenge)
    opening = prover.open(OpeningRequest(challenge_id=challenge.challenge_id, tiles=[0]))
    with pytest.raises(ChallengeRejected, match="out_of_order: .* has no commitment yet"):
        verifier.check_opening(opening)


def test_a_prover_refuses_to_open_what_it_never_committed():
    with pytest.raises(ProverError, match="no commitment for challenge"):
        NumpyProver().open(OpeningRequest(challenge_id=bytes(16), tiles=[0]))


def test_a_freivalds_prover_is_rejected(verifier, clock):
    """Separable linear fingerprints cost O(tile * n) per tile, but are not the fingerprint."""
    for _ in range(3):
        _, _, _, opening = _answer(verifier, clock, FreivaldsProver())
        verdict = verifier.check_opening(opening)
        assert verdict.reason is Reason.WRONG_FINGERPRINT


def test_a_slow_prover_fails_its_floor_on_the_verifiers_clock(verifier, clock):
    class SlowProver(NumpyProver):
        delay = 0.0

        def commit(self, challenge):
            clock.now += self.delay  # the prover's own time does not matter: only this clock
            return super().commit(challenge)

    ops = 2 * SMALL.m * SMALL.n * SMALL.p * SMALL.rounds
    prover = SlowProver()
    prover.delay = 0.9 * ops / SMALL.floor_ops_per_second
    assert verifier.check_opening(_answer(verifier, clock, prover, seconds=0.0)[3]).passed
    prover.delay = 1.1 * ops / SMALL.floor_ops_per_second
    verdict = verifier.check_opening(_answer(verifier, clock, prover, seconds=0.0)[3])
    assert verdict.reason is Reason.BELOW_FLOOR
    assert verdict.detail == "measured 0.9 GOPS, below the floor of 1 GOPS (1 x test-small)"
    assert verdict.throughput_ops_per_second == pytest.approx(ops / prover.delay)


def test_the_round_trip_is_subtracted_and_an_answer_within_it_is_untimeable(clock):
    verifier = Verifier(clock=clock)
    challenge = verifier.issue(SMALL, rtt_seconds=0.5)
    clock.now += 0.6
    prover = NumpyProver()
    verdict = verifier.check_opening(prover.open(verifier.receive_commitment(prover.commit(challenge))))
    assert verdict.throughput_ops_per_second == pytest.approx(challenge.ops / 0.1)
    challenge = verifier.issue(SMALL, rtt_seconds=0.5)
    clock.now += 0.4
    verdict = verifier.check_opening(prover.open(verifier.receive_commitment(prover.commit(challenge))))
    assert verdict.reason is Reason.UNTIMEABLE


def test_measure_rtt_takes_the_fastest_ping_on_the_verifiers_clock(clock):
    durations = iter([0.3, 0.1, 0.2])

    def ping():
        clock.now += next(durations)

    assert Verifier(clock=clock).measure_rtt(ping, samples=3) == pytest.approx(0.1)


def test_gpu_count_scales_rounds_and_the_floor(clock):
    verifier = Verifier(clock=clock)
    challenge = verifier.issue(TINY, gpu_count=3)
    assert challenge.rounds == 3 * TINY.rounds
    clock.now += 0.001
    prover = NumpyProver()
    verdict = verifier.check_opening(prover.open(verifier.receive_commitment(prover.commit(challenge))))
    assert verdict.required_ops_per_second == 3 * 10**9 and verdict.gpu_count == 3


def test_a_slow_prover_fails_on_the_real_clock_too():
    """cpu-dev needs 10 GOPS: 2 s of delay on its 17 GOP alone puts any prover below it."""

    class SleepyProver(NumpyProver):
        def commit(self, challenge):
            time.sleep(2.0)
            return super().commit(challenge)

    verdict, _ = run_round_trip(Verifier(), SleepyProver(), CPU_DEV)
    assert verdict.reason is Reason.BELOW_FLOOR and verdict.elapsed_seconds >= 2.0


def test_the_verifier_regenerates_only_the_rows_and_columns_of_the_opened_tiles(verifier, clock, monkeypatch):
    _, _, request, opening = _answer(verifier, clock, NumpyProver())
    asked = {"rows": 0, "columns": 0}
    real_rows, real_columns = matrices.a_rows, matrices.b_columns

    def rows_spy(seed, round_index, rows, n):
        asked["rows"] += len(rows)
        return real_rows(seed, round_index, rows, n)

    def columns_spy(seed, round_index, columns, n):
        asked["columns"] += len(columns)
        return real_columns(seed, round_index, columns, n)

    monkeypatch.setattr(matrices, "a_rows", rows_spy)
    monkeypatch.setattr(matrices, "b_columns", columns_spy)
    assert verifier.check_opening(opening).passed
    assert asked == {"rows": SMALL.k * SMALL.tile, "columns": SMALL.k * SMALL.tile}


@pytest.mark.parametrize("q", [0.5, 0.75])
def test_a_prover_skipping_tiles_is_caught_at_the_predicted_rate(q):
    """Seeded: 400 challenges against a prover computing a fraction q of the tiles.

    Predicted pass rate C(qL, k) / C(L, k) (k distinct tiles of L), at most q**k; the number
    caught must lie within 4 binomial standard deviations of the prediction."""
    trials = 400
    run = measure_detection(TINY, q=q, trials=trials, seed=20_26)
    total = TINY.tiles_per_round * TINY.rounds
    predicted = 1 - skipping_pass_probability(total, int(q * total), TINY.k)
    assert run.predicted_catch_rate == pytest.approx(predicted)
    assert predicted >= 1 - q**TINY.k
    sigma = (trials * predicted * (1 - predicted)) ** 0.5
    assert abs(run.caught - trials * predicted) <= 4 * sigma, (run.caught, trials * predicted, sigma)


def test_a_prover_skipping_half_of_cpu_dev_is_always_caught():
    run = measure_detection(CPU_DEV, q=0.5, trials=3, seed=1)
    assert run.caught == 3 and run.bound_catch_rate == 1 - 0.5**CPU_DEV.k


def test_skipping_provers_really_skip_and_refuse_bad_fractions():
    prover = SkippingProver(0.25, rng=np.random.default_rng(0))
    challenge = Verifier().issue(TINY)
    assert prover.computed_tiles(challenge) == TINY.tiles_per_round * TINY.rounds // 4
    prints = np.concatenate([values for _, values in prover.round_fingerprints(challenge)])
    assert np.count_nonzero(prints) == prover.computed_tiles(challenge)
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\], got 1.5"):
        SkippingProver(1.5)


def test_the_verifier_recomputes_tiles_on_one_blas_thread(monkeypatch):
    # A tile's product is small; a pool of BLAS threads would spin between the products
    # (bench/GPU.md: four times the CPU time on a 16-core host).
    from threadpoolctl import threadpool_info

    import gpumarket.measure.verifier as verifier_module

    assert any(pool["user_api"] == "blas" for pool in threadpool_info()), "numpy loaded no BLAS to limit"
    threads_seen = []
    recompute = verifier_module.tile_product

    def counting(*args):
        threads_seen.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return recompute(*args)

    monkeypatch.setattr(verifier_module, "tile_product", counting)
    verdict, _ = run_round_trip(Verifier(), NumpyProver(), SMALL)
    assert verdict.passed
    assert threads_seen and set(threads_seen) == {1}
