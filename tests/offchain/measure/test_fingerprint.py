"""Tile fingerprints: every element counts, and no linear (Freivalds) form reproduces them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gpumarket.measure.fingerprint import (
    FINGERPRINT_PRIME,
    MAX_TILE,
    fingerprint_blocks,
    fingerprint_keys,
    fingerprint_tile,
)

SEED = hashlib.sha256(b"fingerprint test").digest()
TILE = 8


@pytest.fixture
def keys():
    return fingerprint_keys(SEED, TILE)


@pytest.fixture
def tile_values():
    return np.random.default_rng(1).integers(-(2**20), 2**20, size=(TILE, TILE), dtype=np.int64)


def test_known_value_pins_the_fingerprint():
    keys = fingerprint_keys(hashlib.sha256(b"matrices test").digest(), 4)
    assert fingerprint_tile(np.arange(16).reshape(4, 4) - 5, keys) == 627_441_099_440_278


def test_it_is_the_documented_formula(keys, tile_values):
    positions = keys.positions()
    weights, offsets = keys.weights(positions), keys.offsets(positions)
    expected = sum(
        int(weights[i, j]) * ((int(tile_values[i, j]) + int(offsets[i, j])) ** 2 % FINGERPRINT_PRIME)
        for i in range(TILE)
        for j in range(TILE)
    )
    assert fingerprint_tile(tile_values, keys) == expected


def test_weights_are_odd_and_offsets_bounded(keys):
    positions = keys.positions()
    weights, offsets = keys.weights(positions), keys.offsets(positions)
    assert np.all(weights % 2 == 1) and weights.max() < 2**16
    assert offsets.min() >= 0 and offsets.max() < 2**24


def test_changing_any_single_element_changes_the_fingerprint(keys, tile_values):
    base = fingerprint_tile(tile_values, keys)
    for i in range(TILE):
        for j in range(TILE):
            for delta in (1, -1, 2 * int(tile_values[i, j]) + 1):
                changed = tile_values.copy()
                changed[i, j] += delta
                assert fingerprint_tile(changed, keys) != base, (i, j, delta)


def test_a_negated_tile_does_not_collide(keys, tile_values):
    assert fingerprint_tile(-tile_values, keys) != fingerprint_tile(tile_values, keys)


def test_it_is_not_linear_in_the_tile(keys, tile_values):
    other = np.random.default_rng(2).integers(-(2**20), 2**20, size=(TILE, TILE), dtype=np.int64)
    zero = np.zeros_like(tile_values)
    f = lambda values: fingerprint_tile(values, keys)  # noqa: E731
    assert f(tile_values + other) - f(zero) != (f(tile_values) - f(zero)) + (f(other) - f(zero))
    assert f(2 * tile_values) - f(zero) != 2 * (f(tile_values) - f(zero))


def test_no_separable_linear_form_fits_the_fingerprints(keys):
    """Fit u, v so that u^T C v matches the fingerprints of random tiles: a least-squares fit on
    the C[i, j] -> fingerprint map fails on fresh tiles, so Freivalds' shortcut cannot stand in."""
    rng = np.random.default_rng(3)
    tiles = rng.integers(-(2**12), 2**12, size=(400, TILE, TILE)).astype(np.float64)
    prints = np.array([fingerprint_tile(t.astype(np.int64), keys) for t in tiles], dtype=np.float64)
    design = np.hstack([tiles.reshape(400, -1), np.ones((400, 1))])  # any linear form plus a constant
    fit, *_ = np.linalg.lstsq(design[:300], prints[:300], rcond=None)
    residual = prints[300:] - design[300:] @ fit
    assert np.sqrt(np.mean(residual**2)) > 0.5 * prints[300:].std()


def test_blocks_fingerprint_each_tile_in_place(keys):
    block = np.random.default_rng(4).integers(-1000, 1000, size=(2 * TILE, 3 * TILE), dtype=np.int64)
    positions = keys.positions()
    prints = fingerprint_blocks(block, keys.weights(positions), keys.offsets(positions), TILE)
    assert prints.shape == (2, 3)
    for r in range(2):
        for c in range(3):
            assert prints[r, c] == fingerprint_tile(block[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE], keys)


def test_the_largest_values_and_tiles_stay_exact_in_int64():
    keys = fingerprint_keys(SEED, MAX_TILE)
    extreme = np.full((MAX_TILE, MAX_TILE), 2**24, dtype=np.int64)
    positions = keys.positions()
    weights, offsets = keys.weights(positions), keys.offsets(positions)
    expected = sum(
        int(w) * ((2**24 + int(o)) ** 2 % FINGERPRINT_PRIME)
        for w, o in zip(weights.reshape(-1), offsets.reshape(-1), strict=True)
    )
    assert fingerprint_tile(extreme, keys) == expected


def test_keys_depend_on_the_seed_and_bad_inputs_are_refused():
    assert fingerprint_keys(SEED, TILE) != fingerprint_keys(bytes(32), TILE)
    with pytest.raises(ValueError, match="tile must be between 1 and 128, got 256"):
        fingerprint_keys(SEED, 256)
    with pytest.raises(ValueError, match="seed must be 32 bytes"):
        fingerprint_keys(b"short", TILE)
    keys = fingerprint_keys(SEED, TILE)
    positions = keys.positions()
    with pytest.raises(ValueError, match="block of 9 x 8 is not made of 8 x 8 tiles"):
        fingerprint_blocks(np.zeros((9, 8), dtype=np.int64), keys.weights(positions), keys.offsets(positions), TILE)
