"""CMA-ES wrapper: optimises, is deterministic, and resumes by replay."""

import io

import numpy as np
import pytest
import torch

from worldmodels.checkpoint import CheckpointError
from worldmodels.es import CMAES, ESReplayError


def sphere(x: np.ndarray) -> np.ndarray:
    """Fitness to maximise, optimum at 0.5 in every dimension."""
    return -((x - 0.5) ** 2).sum(axis=1)


def run(es: CMAES, generations: int) -> list[np.ndarray]:
    asked = []
    for _ in range(generations):
        x = es.ask()
        asked.append(x)
        es.tell(sphere(x))
    return asked


def weights_only_roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_maximises_10d_sphere():
    es = CMAES(10, sigma0=0.3, popsize=12, seed=0)
    run(es, 120)
    assert np.abs(es.mean - 0.5).max() < 1e-3
    assert es.history.shape == (120, 12)
    assert es.history[-1].mean() > es.history[0].mean()


def test_same_seed_same_solutions_whatever_the_global_rng():
    a, b = CMAES(10, 0.1, 8, seed=3), CMAES(10, 0.1, 8, seed=3)
    for _ in range(5):
        np.random.seed(123)
        xa = a.ask()
        np.random.rand(50)  # other code drawing from numpy's global RNG in between
        a.tell(sphere(xa))
        xb = b.ask()
        b.tell(sphere(xb))
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(CMAES(10, 0.1, 8, seed=4).ask(), CMAES(10, 0.1, 8, seed=3).ask())


def test_replay_resume_equals_uninterrupted():
    full = CMAES(20, 0.2, 10, seed=7)
    asked_full = run(full, 12)

    first = CMAES(20, 0.2, 10, seed=7)
    run(first, 5)
    resumed = CMAES.from_state_dict(weights_only_roundtrip(first.state_dict()))
    assert resumed.generation == 5
    asked_rest = run(resumed, 7)
    for x_full, x_res in zip(asked_full[5:], asked_rest):
        np.testing.assert_array_equal(x_full, x_res)
    np.testing.assert_array_equal(full.mean, resumed.mean)
    np.testing.assert_array_equal(full.history, resumed.history)
    assert full.sigma == resumed.sigma


def test_replay_mismatch_is_a_clear_error():
    es = CMAES(10, 0.1, 8, seed=0)
    run(es, 4)
    state = es.state_dict()
    state["mean"] = state["mean"] + 1e-3   # e.g. written by another pycma version
    with pytest.raises(ESReplayError, match="does not reproduce"):
        CMAES.from_state_dict(state)
    state = es.state_dict()
    state["fitness"] = state["fitness"][:, :5]
    with pytest.raises(CheckpointError, match="fitness history"):
        CMAES.from_state_dict(state)


def test_ask_tell_protocol_errors():
    es = CMAES(10, 0.1, 8, seed=0)
    with pytest.raises(RuntimeError):
        es.tell(np.zeros(8))
    es.ask()
    with pytest.raises(RuntimeError):
        es.ask()
    with pytest.raises(ValueError, match="8 fitness"):
        es.tell(np.zeros(7))
    with pytest.raises(FloatingPointError):
        es.tell(np.full(8, np.nan))
