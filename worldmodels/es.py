"""CMA-ES (pycma) for the controller, with resume by replay instead of pickling.

``CMAES`` wraps ``cma.CMAEvolutionStrategy``: ``x0`` (zeros, or a previous C's parameters to
warm-start), ``sigma0``, ``popsize``, ``seed``;
``ask()`` returns a P x n array, ``tell(fitness)`` takes fitness to MAXIMISE (returns).

Determinism: pycma's ``seed`` option only seeds numpy's *global* RNG, which anything else in
the process may also draw from. Instead the strategy samples from its own
``numpy.random.Generator`` (pycma's ``randn`` option; ``seed`` is then unused), so the
solutions depend only on the seed and the fitness values told so far.

Resume: checkpoints must load with ``torch.load(weights_only=True)``, so pycma's object is
never pickled. :meth:`CMAES.state_dict` stores the fitness of every past generation; loading
rebuilds a fresh strategy with the same options and seed and replays ask() + tell() for each
generation, then compares the resulting mean and step size with the stored ones. A mismatch
(e.g. another pycma or numpy version) raises :class:`ESReplayError`. Replay costs one ask+tell
per stored generation (tens of ms each for 867 parameters).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

with warnings.catch_warnings():
    # pycma warns on import when matplotlib (only needed for its plots) is missing.
    warnings.filterwarnings("ignore", message="Could not import matplotlib")
    import cma

from .checkpoint import CheckpointError


class ESReplayError(CheckpointError):
    """Replaying a stored ES history did not reproduce the stored state."""


class CMAES:
    """CMA-ES maximising fitness, starting from ``x0`` (zeros by default)."""

    def __init__(self, n_params: int, sigma0: float = 0.1, popsize: int = 64, seed: int = 0,
                 x0: np.ndarray | None = None):
        if n_params < 2:
            raise ValueError(f"CMA-ES needs at least 2 parameters, got {n_params}")
        if popsize < 2:
            raise ValueError(f"popsize must be >= 2, got {popsize}")
        if sigma0 <= 0:
            raise ValueError(f"sigma0 must be > 0, got {sigma0}")
        self.n_params, self.sigma0 = int(n_params), float(sigma0)
        self.popsize, self.seed = int(popsize), int(seed)
        rng = np.random.default_rng(self.seed)
        options = {
            "popsize": self.popsize,
            "seed": np.nan,  # pycma would otherwise (re)seed numpy's global RNG
            "randn": lambda lam, n: rng.standard_normal((lam, n)),
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
        }
        self.x0 = (np.zeros(self.n_params) if x0 is None
                   else np.asarray(x0, dtype=np.float64).copy())
        if self.x0.shape != (self.n_params,) or not np.all(np.isfinite(self.x0)):
            raise ValueError(f"x0 must be {self.n_params} finite values, got shape {self.x0.shape}")
        self._es = cma.CMAEvolutionStrategy(self.x0.copy(), self.sigma0, options)
        self._pending: list[np.ndarray] | None = None
        self._history: list[np.ndarray] = []

    @property
    def generation(self) -> int:
        """Generations told so far."""
        return len(self._history)

    @property
    def mean(self) -> np.ndarray:
        """The current distribution mean (the ES's best guess), float64, n."""
        return np.array(self._es.mean, dtype=np.float64)

    @property
    def sigma(self) -> float:
        return float(self._es.sigma)

    @property
    def history(self) -> np.ndarray:
        """Fitness of every told generation, G x P (maximised values)."""
        return np.array(self._history, dtype=np.float64).reshape(-1, self.popsize)

    def ask(self) -> np.ndarray:
        """The next population, P x n float64. Call tell() before asking again."""
        if self._pending is not None:
            raise RuntimeError("ask() called twice without tell(); tell the previous population first")
        self._pending = self._es.ask()
        return np.array(self._pending, dtype=np.float64)

    def tell(self, fitness: np.ndarray | torch.Tensor) -> None:
        """Fitness (to maximise) of the population from the last ask(), shape P."""
        if self._pending is None:
            raise RuntimeError("tell() called without a pending ask()")
        f = np.asarray(fitness.cpu() if isinstance(fitness, torch.Tensor) else fitness,
                       dtype=np.float64)
        if f.shape != (self.popsize,):
            raise ValueError(f"expected {self.popsize} fitness values, got shape {f.shape}")
        if not np.all(np.isfinite(f)):
            raise FloatingPointError(f"non-finite fitness told to CMA-ES: {f}")
        self._es.tell(self._pending, list(-f))  # pycma minimises
        self._pending = None
        self._history.append(f.copy())

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a weights_only checkpoint: options, fitness history, replay check."""
        return {
            "n_params": self.n_params,
            "sigma0": self.sigma0,
            "popsize": self.popsize,
            "seed": self.seed,
            "x0": torch.from_numpy(self.x0),
            "fitness": torch.from_numpy(self.history),
            "mean": torch.from_numpy(self.mean),
            "sigma": self.sigma,
            "cma_version": cma.__version__,
            "numpy_version": np.__version__,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "CMAES":
        """Rebuild by replaying the stored fitness history; ESReplayError if it diverges."""
        try:
            x0 = state.get("x0")  # absent in 0.1.0 checkpoints: zeros
            es = cls(int(state["n_params"]), float(state["sigma0"]), int(state["popsize"]),
                     int(state["seed"]),
                     None if x0 is None else torch.as_tensor(x0).double().numpy())
            fitness = torch.as_tensor(state["fitness"]).double().numpy()
            stored_mean = torch.as_tensor(state["mean"]).double().numpy()
            stored_sigma = float(state["sigma"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"malformed ES state ({type(e).__name__}: {e})") from e
        if fitness.ndim != 2 or fitness.shape[1] != es.popsize:
            raise CheckpointError(f"ES fitness history has shape {tuple(fitness.shape)}, "
                                  f"expected G x {es.popsize}")
        for f in fitness:
            es.ask()
            es.tell(f)
        if stored_mean.shape != (es.n_params,):
            raise CheckpointError(f"ES mean has shape {tuple(stored_mean.shape)}, "
                                  f"expected ({es.n_params},)")
        mean_err = float(np.max(np.abs(es.mean - stored_mean)))
        # Tolerance, not equality: the same versions replay bit for bit, but another BLAS
        # may round the eigendecomposition differently and that alone is harmless.
        if (mean_err > 1e-9 * (1.0 + float(np.max(np.abs(stored_mean))))
                or abs(es.sigma - stored_sigma) > 1e-9 * (1.0 + stored_sigma)):
            raise ESReplayError(
                f"replaying {len(fitness)} generations of ES history does not reproduce the "
                f"stored CMA-ES state (max |mean difference| {mean_err:.3g}, sigma {es.sigma:.6g} "
                f"vs stored {stored_sigma:.6g}). The checkpoint was written with cma "
                f"{state.get('cma_version')} / numpy {state.get('numpy_version')}; this is cma "
                f"{cma.__version__} / numpy {np.__version__}. Resume with those versions or "
                f"start a new run in another folder.")
        return es
