"""Configuration: one frozen dataclass per component, and named presets.

Every field has a one-line docstring (the string literal under it), which the CLI shows as
help text. The resolved config of a stage is written next to its run and stored in every
checkpoint, so a checkpoint can rebuild its model without guesswork.

Presets:
- ``debug``: seconds per stage; for smoke tests and trying the commands.
- ``laptop`` (the default): the whole pipeline on a 2-core CPU machine, C trained only in M's
  dream with two iterative rounds (``laptop-real`` plus the ``dream`` overlay, E24's round-1
  episode offset and a second round; ``worldmodels.commands.iterate``). ``laptop-dream`` is the
  same preset under its old name.
- ``laptop-real``: the same V and M sizes, C trained in the real env (the paper's CarRacing
  protocol; ``laptop`` before session 21).
- ``paper``: the sizes of Ha & Schmidhuber (2018) for CarRacing.
- ``doom-debug``, ``doom-laptop``, ``doom-paper``: VizDoom Take Cover, C trained only in M's
  dream (the paper's section 4), needs the ``[doom]`` extra.

Overlays (``OVERLAYS``) are partial presets, a few ``SECTION.FIELD`` values applied over a full
preset: ``--preset laptop-real --preset dream-e1 --preset dropout``. On the command line every
field is an option ``--SECTION.FIELD VALUE`` (``--rnn.epochs 30``, ``--controller.dream-start
branch``; underscores written as dashes), applied over all the presets.

Every preset runs its parallel work on this machine (``ClusterConfig.backend = "local"``);
``--cluster.backend ray`` runs it on a Ray cluster.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import operator
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any, Callable, Literal, Mapping, Sequence, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


def option(section: str, name: str) -> str:
    """The command-line option of config field ``name`` of ``section``: ``--rnn.seq-len``."""
    return f"--{section}.{name.replace('_', '-')}"


@cache
def literal_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The fields of config dataclass ``cls`` typed ``Literal[...]``, and their values."""
    return {name: get_args(hint) for name, hint in get_type_hints(cls).items()
            if get_origin(hint) is Literal}


MAX_COUNT = 10_000_000
"""Upper bound of every count (episodes, steps, epochs, workers, ...): a mistyped
``--collect.episodes 10000000000`` is refused at once instead of hanging while it plans."""


def _check(cfg: Any, *, positive: tuple[str, ...] = (), at_least_one: tuple[str, ...] = (),
           non_negative: tuple[str, ...] = (), fraction: tuple[str, ...] = (),
           unit: tuple[str, ...] = ()) -> None:
    """Refuse a config with a non-finite float, a value out of its field's range or a
    ``Literal`` field holding another value, naming the field, before any stage writes
    anything (``__post_init__`` of every config)."""
    cls: type = type(cfg)

    def name_of(field_name: str) -> str:  # the config field and its command-line option
        section = next(name for name, section_cls in SECTIONS.items() if section_cls is cls)
        return f"{cls.__name__}.{field_name} ({option(section, field_name)})"

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name_of(f.name)} must be a finite number, got {value}")
    for group, test, what in ((positive, lambda v: v > 0, "> 0"),
                              (at_least_one, lambda v: v >= 1, ">= 1"),
                              (non_negative, lambda v: v >= 0, ">= 0"),
                              (fraction, lambda v: 0 <= v < 1, "in [0, 1)"),
                              (unit, lambda v: 0 <= v <= 1, "in [0, 1]")):
        for field_name in group:
            value = getattr(cfg, field_name)
            if not test(value):
                raise ValueError(f"{name_of(field_name)} must be {what}, got {value}")
            if (type(value) is int and field_name != "seed" and value > MAX_COUNT
                    and group is not fraction and group is not unit):
                raise ValueError(f"{name_of(field_name)} must be <= {MAX_COUNT:,}, got {value:,}")
    for field_name, allowed in literal_choices(cls).items():
        if getattr(cfg, field_name) not in allowed:
            raise ValueError(f"{name_of(field_name)} must be one of {allowed}, "
                             f"got {getattr(cfg, field_name)!r}")


def _int_list(text: str) -> tuple[int, ...]:
    """``'1,2'`` as ``(1, 2)``; ``()`` where a part is not an integer (the caller names the option)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        return ()


def noise_dims(cfg: "CollectConfig") -> tuple[int, ...] | None:
    """``collect.action_noise_dims`` as indices (None: every dimension); a malformed list
    raises a ValueError naming the option."""
    text = cfg.action_noise_dims.strip()
    if not text:
        return None
    dims = _int_list(text)
    if not dims or min(dims) < 0 or len(set(dims)) != len(dims):
        raise ValueError(f"CollectConfig.action_noise_dims ({option('collect', 'action_noise_dims')}) "
                         f"must be distinct action indices such as '0,1', got {cfg.action_noise_dims!r}")
    return dims


@dataclass(frozen=True)
class EnvConfig:
    """The real environment and its frame processing."""

    env_id: str = "worldmodels/CarRacingFast-v3"
    """gymnasium id of the real environment: the fast one, byte-identical to ``CarRacing-v3`` (tested), or
    ``CarRacing-v3``."""
    frame_size: int = 64
    """Side of the square frame given to V, after cropping and resizing."""
    crop_rows: int = 84
    """Rows kept from the top of the 96x96 frame; the rest is the dashboard."""
    max_steps: int = 1000
    """Episode length limit in env steps (CarRacing-v3 truncates at 1000): of every real episode, collected
    or evaluated (C's real-mode training episodes may be shorter: ``controller.real_max_steps``)."""

    def __post_init__(self) -> None:
        _check(self, at_least_one=("frame_size", "crop_rows", "max_steps"))


@dataclass(frozen=True)
class CollectConfig:
    """Random-policy rollouts for training V and M."""

    episodes: int = 10_000
    """Number of episodes to collect."""
    workers: int = 2
    """Parallel worker processes."""
    policy: Literal["brownian", "random", "sticky", "agent"] = "brownian"
    """Data-collection policy: CarRacing's ``brownian`` (temporally correlated) or ``random`` (uniform), Take
    Cover's ``random`` or ``sticky`` (each action held 1-50 steps), or ``agent`` (the World Models agent of
    ``controller``)."""
    seed: int = 0
    """Base seed; each episode's env and policy seed derive from it and the episode index."""
    controller: str = ""
    """Policy ``agent``: the C checkpoint that drives (with the V and M it records); ``iterate`` sets it each
    round."""
    action_noise: float = 0.1
    """Policy ``agent`` (and every ``iterate`` round): std of the Gaussian noise added to each action (then
    clipped), for exploration."""
    brownian_share: float = 0.0
    """Policy ``agent`` (and every ``iterate`` round): fraction of episodes (drawn per episode from its seed)
    driven by ``brownian`` instead."""
    action_noise_dims: str = ""
    """Policy ``agent``: the action dimensions that get ``action_noise``, comma-separated indices (``0,1``:
    CarRacing's steer and gas); empty: all. CarRacing's brake is better left alone: noise 0.1 on the brake
    alone turns a C that drives 423 into -54 (it brakes on half the steps; notebook, E14)."""
    episode_offset: float = 0.0
    """Policy ``agent``: std of a Gaussian offset drawn once per episode and added to every action of it
    (on ``action_noise_dims``, then clipped), for exploration that persists: per-step noise averages out
    over a few steps, so M never sees what C driving a little faster or slower all the time leads to
    (notebook, E18). 0: off (the episodes are then the same as before the option existed)."""

    def __post_init__(self) -> None:
        _check(self, at_least_one=("episodes", "workers"),
               non_negative=("seed", "action_noise", "episode_offset"), unit=("brownian_share",))
        noise_dims(self)  # a malformed list is refused here, an index out of range by Preset


@dataclass(frozen=True)
class VAEConfig:
    """V: the convolutional VAE and its training."""

    z_dim: int = 32
    """Size of the latent vector z."""
    kl_tolerance: float = 0.5
    """Free bits per latent dim: the KL term is floored at kl_tolerance * z_dim nats."""
    epochs: int = 10
    """Passes over the training frames."""
    batch_size: int = 100
    """Frames per gradient step."""
    lr: float = 1e-4
    """Adam learning rate."""
    val_episodes: int = 20
    """Episodes held out for the validation loss (taken from the end of the manifest)."""
    max_frames_per_epoch: int = 0
    """If > 0, at most this many randomly chosen frames per epoch (0: all)."""
    seed: int = 0
    """Seed for initialisation and data order."""

    def __post_init__(self) -> None:
        _check(self, positive=("lr",), at_least_one=("z_dim", "epochs", "batch_size"),
               non_negative=("kl_tolerance", "val_episodes", "max_frames_per_epoch", "seed"))


@dataclass(frozen=True)
class MDNRNNConfig:
    """M: the MDN-RNN (LSTM + mixture density head, reward and done heads) and its training."""

    z_dim: int = 32
    """Size of z; must match V."""
    action_dim: int = 3
    """Size of the action vector."""
    hidden_size: int = 256
    """LSTM hidden units."""
    n_gaussians: int = 5
    """Mixture components per latent dimension."""
    predict_reward: bool = True
    """Add a reward head (needed to train C inside the dream)."""
    predict_done: bool = True
    """Add a done head, a logit (needed to train C inside the dream)."""
    done_pos_weight: float = 10.0
    """Weight of positive (terminal) steps in the done loss."""
    reward_weight: float = 1.0
    """Weight of the reward MSE in the total loss."""
    reward_clip: float = 0.0
    """Clip the reward M learns to [-reward_clip, reward_clip] (0: as the env pays it). CarRacing's -100 for
    leaving the playfield is a rare spike whose squared error dominates the reward loss (and, through the
    gradient clipping, the updates); 5 keeps every tile's reward (1000 / tiles, about 3-4)."""
    reward_smooth: int = 0
    """Spread each step's reward evenly over the ``reward_smooth`` steps around it (within its episode;
    0 or 1: off), after ``reward_clip``. CarRacing pays a tile as one spike every ~12 steps, whose exact
    step depends on where the tile's edge lies; M then learns a rate of progress instead of the spikes'
    timing. Every episode's return is kept."""
    done_weight: float = 1.0
    """Weight of the done BCE in the total loss."""
    dropout: float = 0.0
    """Dropout's Dream Land: drop entries of z and h at the LSTM's input while training, one mask per sequence
    (0: off)."""
    reward_heads: int = 1
    """Reward heads: K > 1 is an ensemble, each head trained on a fixed half of the sequences (the dream can
    charge for their disagreement)."""
    seq_len: int = 999
    """Timesteps per training sequence (chunks of episodes; 999 = whole 1000-frame episodes)."""
    batch_size: int = 100
    """Sequences per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""
    epochs: int = 20
    """Passes over the training sequences."""
    val_episodes: int = 20
    """Episodes held out for validation losses."""
    seed: int = 0
    """Seed for initialisation, z re-sampling and data order."""

    def __post_init__(self) -> None:
        _check(self, positive=("lr", "grad_clip", "done_pos_weight"),
               at_least_one=("z_dim", "action_dim", "hidden_size", "n_gaussians", "reward_heads",
                             "seq_len", "batch_size", "epochs"),
               non_negative=("reward_weight", "reward_clip", "reward_smooth", "done_weight", "val_episodes",
                             "seed"),
               fraction=("dropout",))


@dataclass(frozen=True)
class ControllerConfig:
    """C and its training with CMA-ES."""

    mode: Literal["dream", "real"] = "dream"
    """Where candidates are scored: ``dream`` (batched, inside M) or ``real`` (CarRacing)."""
    popsize: int = 64
    """CMA-ES population size."""
    sigma0: float = 0.1
    """CMA-ES initial step size (x0 is zeros)."""
    rollouts_per_candidate: int = 16
    """Episodes per candidate; fitness is their mean return."""
    generations: int = 300
    """Generations to run."""
    temperature: float = 1.15
    """Dream temperature tau: mixture logits / tau, Gaussian std * sqrt(tau)."""
    dream_max_steps: int = 1000
    """Dream mode: a dream's length limit in M's steps, set apart from ``env.max_steps`` (equal in the
    presets; shorter for ``dream_start`` ``branch``)."""
    real_max_steps: int = 0
    """Real mode: C's training episodes stop after this many steps (0, or more than ``env.max_steps``:
    ``env.max_steps``); the periodic and final evaluations run ``env.max_steps``."""
    done_threshold: float = 0.5
    """A dream step is terminal when the done probability exceeds this (sampled if ``sample_done``)."""
    sample_done: bool = False
    """Sample done from Bernoulli(p) instead of thresholding p."""
    done_logit_offset: float = 0.0
    """Added to M's done logit in the dream (0: as M learned it). M's done head learns with positives
    weighted by ``rnn.done_pos_weight`` (w), which raises a small probability p to about w * p;
    ``-log(w)`` (-2.303 for w = 10) reads the head as that unweighted probability, an easier dream."""
    reward_penalty: float = 0.0
    """The dream pays mean - reward_penalty * std over M's reward heads (MOPO-style pessimism; needs
    rnn.reward_heads > 1; 0: their mean)."""
    dream_dropout: float = 0.0
    """Dropout's Dream Land: drop entries of z and h at M's LSTM input in the dream, one mask per dream
    episode, so each episode is a slightly different world (0: off)."""
    dream_start: Literal["first", "branch"] = "first"
    """Where dreams start: ``first`` (a real first frame, h = 0, the paper) or ``branch`` (M's state
    mid-episode on the newest real data, so C is scored where M has data; use a short dream_max_steps)."""
    use_mu: bool = False
    """In the real env, feed C the VAE mean mu instead of a sampled z (the paper samples)."""
    features: Literal["zh", "zch"] = "zh"
    """C's inputs: ``zh`` [z, h] (the paper's CarRacing C) or ``zch`` [z, h, c], M's LSTM cell c as
    well (the paper's Doom C reads z, c and h: 64 + 512 + 512 weights). c is M's memory before the
    output gate; h = o * tanh(c) shows C only the part of it that M's gates let out."""
    eval_every: int = 25
    """Evaluate the CMA mean in the real env every this many generations (0: never)."""
    eval_episodes: int = 16
    """Real episodes per periodic evaluation (held-out seeds)."""
    eval_start: int = 0
    """Skip the periodic evaluations before this generation (the last generation is evaluated
    either way; 0: every ``eval_every`` from the first): early CMA means are rarely the best, and
    each evaluation costs ``eval_episodes`` real episodes."""
    workers: int = 2
    """Worker processes for real-env rollouts."""
    exploit_gap: float = 150.0
    """Exploit detector (dream mode): flag an evaluation whose dream return exceeds the real validation return
    by more than this, or whose real return fell more than this below the best evaluation's while the dream
    return rose above that evaluation's (dream up, real down)."""
    patience: int = 0
    """Stop C's training after this many evaluations in a row without a new best validation return (needs
    ``eval_every``; 0: run all generations). The best-validated C is the result either way."""
    seed: int = 0
    """Seed for CMA-ES sampling and rollouts."""

    def __post_init__(self) -> None:
        _check(self, positive=("sigma0",),
               at_least_one=("rollouts_per_candidate", "generations", "dream_max_steps",
                             "eval_episodes", "workers"),
               non_negative=("temperature", "real_max_steps", "eval_every", "eval_start", "exploit_gap",
                             "reward_penalty", "patience", "seed"),
               fraction=("dream_dropout",), unit=("done_threshold",))
        if self.patience > 0 and self.eval_every == 0:
            raise ValueError("ControllerConfig.patience (--controller.patience) stops on the validation "
                             "evaluations: it needs controller.eval_every > 0")
        if self.popsize < 2:
            raise ValueError("ControllerConfig.popsize (--controller.popsize) must be >= 2, "
                             f"got {self.popsize}")


@dataclass(frozen=True)
class EvalConfig:
    """Final evaluation in the real environment."""

    episodes: int = 100
    """Episodes; the seeds are the fixed test range (see ``worldmodels.seeds``)."""
    workers: int = 2
    """Parallel worker processes."""
    use_mu: bool = False
    """Feed C the VAE mean mu instead of a sampled z."""

    def __post_init__(self) -> None:
        _check(self, at_least_one=("episodes", "workers"))


@dataclass(frozen=True)
class IterateConfig:
    """Iterative training (the paper's section 5): rounds of collect with C -> retrain M -> C in the dream."""

    rounds: int = 0
    """Rounds after round 0 (0: no iteration, the plain pipeline)."""
    episodes: int = 40
    """Real episodes collected per round, driven by the previous round's C."""
    round_episodes: str = ""
    """Real episodes per round as a comma list, overriding ``episodes``: ``100,200`` collects 100 in round 1
    and 200 in round 2 (a round past the list takes its last number). Empty: ``episodes`` every round."""
    workers: int = 2
    """Worker processes for collection (the exploration noise and mix are ``collect.action_noise`` and
    ``collect.brownian_share``)."""
    warm_start: bool = False
    """Start each round's CMA-ES from the previous round's C instead of zeros."""
    fine_tune_m: bool = False
    """Start each round's M from the previous round's M instead of fresh weights. A retrained M's hidden
    units mean something else, so the previous C (most of whose weights read h) is lost; a fine-tuned M keeps
    h's meaning, and with ``warm_start`` each round's C goes on from the last one."""
    fine_tune_epochs: int = 0
    """With ``fine_tune_m``: epochs of each round's M over all data (0: ``rnn.epochs``)."""
    recon_frames: int = 2000
    """Frames per round on which V's reconstruction error is measured (agent frames vs random ones)."""
    models: int = 1
    """Ms trained per round k >= 1 on the same data, each with its own seed and its own C in its own dream;
    the round keeps the C with the best validation score (every C's validation counts as real env steps).
    An M's seed alone can decide whether its dream teaches driving."""
    round0_models: int = 1
    """Ms trained in round 0 (on the first collection), each with its own seed and its own C in its own
    dream; the run keeps the C with the best validation score (needs ``controller.eval_every`` > 0). Take
    Cover: 2 of 7 seeds of the same recipe dodge, and 32 validation episodes tell which (notebook, D5)."""
    controllers: int = 1
    """Cs trained in each M's dream (every round's, and round 0's unless ``round0_controllers`` says
    otherwise), each with its own CMA-ES seed; the
    best-validated C of all of them is kept (needs ``controller.eval_every`` > 0). A C costs less than
    an M and its C, and C's seed decides as much as M's: Take Cover's Cs of one M validated at 934, 772
    and 273 (notebook, D8)."""
    round0_controllers: int = 0
    """Cs trained in each of round 0's Ms' dreams, each with its own CMA-ES seed; 0: as ``controllers``.
    CarRacing's round 0 dreams of random data teach every C to circle (notebook, E9, E23): with
    ``controllers 2, round0_controllers 1`` (``laptop``) a run spends its other Cs on the rounds only
    (E27, E28)."""
    eval_start: int = 0
    """In rounds k >= 1, C's first validation comes at this generation (``controller.eval_start`` for
    these rounds; round 0 keeps the controller's). With ``controller.eval_every 10, generations 20`` and
    20 here, each round's C is validated once, at generation 20, for half the validation steps. Not in
    ``laptop``: CarRacing's rounds often keep a generation-10 C (E31 seed 3: round 1's only driving C
    validated 349.5 at 10 and -21.5 at 20; notebook, E32). 0: as round 0."""
    stop_at: float = 0.0
    """If > 0, no further round starts once a round's (or round 0's) kept C validates at or above this
    return (needs ``controller.eval_every`` > 0): ``rounds`` is then the most rounds a run spends, and a
    seed whose first round already drives does not pay for rounds that rarely beat it (notebook, E14,
    E19, E25). 0: every round runs."""

    def __post_init__(self) -> None:
        _check(self, at_least_one=("episodes", "workers", "models", "round0_models", "controllers"),
               non_negative=("rounds", "recon_frames", "fine_tune_epochs", "stop_at",
                             "round0_controllers", "eval_start"))
        self.episodes_of(1)  # a malformed round_episodes fails here, naming the option

    def episodes_of(self, k: int) -> int:
        """Real episodes collected in round ``k`` >= 1: ``round_episodes``' k-th number (its last past
        the list's end), else ``episodes``."""
        text = self.round_episodes.strip()
        if not text:
            return self.episodes
        counts = _int_list(text)
        if not counts or min(counts) < 1 or max(counts) > MAX_COUNT:
            raise ValueError(f"IterateConfig.round_episodes ({option('iterate', 'round_episodes')}) "
                             f"must be episode counts >= 1 such as '100,200', got "
                             f"{self.round_episodes!r}")
        return counts[min(k, len(counts)) - 1]

    @property
    def round0_cs(self) -> int:
        """Cs per M in round 0: ``round0_controllers``, or ``controllers`` when that is 0."""
        return self.round0_controllers or self.controllers


@dataclass(frozen=True)
class ClusterConfig:
    """Where collection, real-env episodes and dream populations run: processes on this machine, or a Ray
    cluster (``worldmodels.backends``)."""

    backend: Literal["local", "ray"] = "local"
    """``local`` (worker processes on this machine) or ``ray`` (Ray tasks and actors of one CPU each, as many
    as ``workers``; needs the ``[ray]`` extra; output folders and checkpoints on storage every node sees)."""
    ray_address: str = ""
    """Backend ``ray``: the cluster's ``HOST:PORT`` (printed by ``ray start --head``); empty: Ray's convention
    (``RAY_ADDRESS``, else the cluster last started on this machine, else a new one here)."""

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class Preset:
    """A full pipeline configuration."""

    name: str
    env: EnvConfig = field(default_factory=EnvConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    rnn: MDNRNNConfig = field(default_factory=MDNRNNConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    iterate: IterateConfig = field(default_factory=IterateConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        from .worlds import world_of

        world = world_of(self.env.env_id)  # unknown id: ValueError listing the known ones
        if self.rnn.action_dim != world.action_dim:
            raise ValueError(f"MDNRNNConfig.action_dim (--rnn.action-dim) is {self.rnn.action_dim}, "
                             f"but {self.env.env_id} has {world.action_dim} action inputs")
        if self.controller.mode == "dream" and world.dream_reward == "head" \
                and not self.rnn.predict_reward:
            raise ValueError("controller.mode 'dream' in this world needs M's reward head "
                             "(MDNRNNConfig.predict_reward, --rnn.predict-reward)")
        dims = noise_dims(self.collect) or ()
        if dims and max(dims) >= world.action_dim:
            raise ValueError(f"CollectConfig.action_noise_dims (--collect.action-noise-dims) is "
                             f"{self.collect.action_noise_dims!r}, but {self.env.env_id} has "
                             f"{world.action_dim} action dimensions (0..{world.action_dim - 1})")
        for name in ("round0_models", "controllers", "round0_controllers"):
            if getattr(self.iterate, name) > 1 and self.controller.eval_every == 0:
                raise ValueError(f"IterateConfig.{name} ({option('iterate', name)}) is "
                                 f"{getattr(self.iterate, name)}: the run keeps the C with the best "
                                 "validation score, so C needs validation (--controller.eval-every > 0)")
        if self.iterate.stop_at > 0 and self.controller.eval_every == 0:
            raise ValueError(f"IterateConfig.stop_at ({option('iterate', 'stop_at')}) is "
                             f"{self.iterate.stop_at:g}: it reads the C's validation score, so C "
                             "needs validation (--controller.eval-every > 0)")
        if self.controller.mode == "dream" and not self.rnn.predict_done \
                and world.dream_reward == "survival":
            raise ValueError("controller.mode 'dream' in this world counts the steps until M's "
                             "done head fires (MDNRNNConfig.predict_done, --rnn.predict-done)")


SECTIONS: dict[str, type] = {name: hint for name, hint in get_type_hints(Preset).items()
                             if name != "name"}
"""The config sections of a :class:`Preset` (``env``, ``collect``, ...), and their dataclasses."""


def get_preset(name: str) -> Preset:
    """Return the named full preset, or raise a ValueError listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)} "
                         f"(overlays, after one of them: {sorted(OVERLAYS)})") from None


def with_overrides(cfg: T, overrides: dict[str, Any]) -> T:
    """``cfg`` with the given fields replaced; ``None`` values are ignored."""
    values = {k: v for k, v in overrides.items() if v is not None}
    names = {f.name for f in fields(cfg)}  # type: ignore[arg-type]
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{type(cfg).__name__}: unknown fields {sorted(unknown)}")
    return replace(cfg, **values)  # type: ignore[type-var]


def with_values(preset: Preset, values: Mapping[str, Any]) -> Preset:
    """``preset`` with the ``SECTION.FIELD`` entries of ``values`` replaced (``None``: kept)."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            raise ValueError(f"{key!r}: unknown config section {section!r}; "
                             f"use one of {list(SECTIONS)}")
        changes.setdefault(section, {})[name] = value
    return replace(preset, **{section: with_overrides(getattr(preset, section), fields)
                              for section, fields in changes.items()})


def compose_presets(names: Sequence[str]) -> Preset:
    """A full preset (the first name, else ``DEFAULT_PRESET``) with the named overlays applied
    in order; its name joins the names with ``+`` (``laptop+dream``)."""
    names = list(names)
    if not names or names[0] in OVERLAYS:
        names.insert(0, DEFAULT_PRESET)
    preset = get_preset(names[0])
    for name in names[1:]:
        if name not in OVERLAYS:
            get_preset(name)  # unknown: a ValueError listing the presets
            raise ValueError(f"--preset {name} is a full preset: name it first, and only "
                             f"overlays ({', '.join(OVERLAYS)}) after it")
        preset = with_values(preset, OVERLAYS[name].values)
    return replace(preset, name="+".join(names)) if len(names) > 1 else preset


PRESETS: dict[str, Preset] = {
    "debug": Preset(
        name="debug",
        env=EnvConfig(max_steps=100),
        collect=CollectConfig(episodes=6, workers=2),
        vae=VAEConfig(epochs=1, batch_size=32, lr=1e-3, val_episodes=1),
        rnn=MDNRNNConfig(hidden_size=64, seq_len=32, batch_size=8, epochs=2, val_episodes=1),
        controller=ControllerConfig(
            popsize=8, rollouts_per_candidate=2, generations=2, dream_max_steps=100,
            eval_every=2, eval_episodes=2,
        ),
        eval=EvalConfig(episodes=2),
    ),
    # The paper's CarRacing protocol: C in the real env (504.7, re-run 426; README, "Results").
    # It was `laptop` until session 21; `laptop` is now this plus the `dream` overlay and E24's
    # round-1 episode offset.
    "laptop-real": Preset(
        name="laptop-real",
        collect=CollectConfig(episodes=200, workers=2),
        vae=VAEConfig(epochs=3, val_episodes=8, lr=1e-3),
        rnn=MDNRNNConfig(seq_len=100, batch_size=64, epochs=20, val_episodes=8),
        # Half-length training episodes and one track per candidate keep a generation near
        # 20 s on 2 cores.
        controller=ControllerConfig(
            mode="real", popsize=16, rollouts_per_candidate=1, generations=50,
            real_max_steps=500, eval_every=10, eval_episodes=4,
        ),
        eval=EvalConfig(episodes=100),
    ),
    "paper": Preset(
        name="paper",
        collect=CollectConfig(episodes=10_000),
        vae=VAEConfig(epochs=10, batch_size=100, lr=1e-4, val_episodes=100),
        rnn=MDNRNNConfig(seq_len=999, batch_size=100, epochs=20, val_episodes=100),
        controller=ControllerConfig(
            popsize=64, rollouts_per_candidate=16, generations=1800, eval_every=25,
            eval_episodes=1024,
        ),
        eval=EvalConfig(episodes=100),
    ),
}


@dataclass(frozen=True)
class Overlay:
    """A partial preset: a few fields, applied over a full preset (``--preset laptop --preset dream``)."""

    doc: str
    """One line on what it changes (shown by ``--help``)."""
    values: dict[str, Any]
    """``SECTION.FIELD`` -> value."""


# Dropout's Dream Land masks (E1-E2) and short branched dreams (E5), each an overlay and both
# part of the dream protocol.
_DROPOUT = {"rnn.dropout": 0.05, "controller.dream_dropout": 0.1}
_BRANCH = {"controller.dream_start": "branch", "controller.dream_max_steps": 200,
           "controller.rollouts_per_candidate": 32}

OVERLAYS: dict[str, Overlay] = {
    # C learns only in M's dream, iteratively (C drives, M learns from what it did, C learns
    # again in the new dream): E13 of docs/dream_experiments.md, the best dream protocol
    # measured end to end (3 seeds: 445.3 +- 83.5 on the 100 test tracks, ~445k real env
    # steps; the real-env `laptop-real`: 504.7, re-run 426, ~610k steps). `laptop` is
    # `laptop-real` with this overlay and E24's round-1 episode offset (ROUND1_OFFSET).
    "dream": Overlay(
        "C only in M's dream (E13): branched 200-step dreams (pop 32 x 32), dropout masks, "
        "M on rewards clipped to +-5, 1 round of 100 episodes with 4 Ms (each its own C, the "
        "best on 16 validation tracks kept)", {
            "controller.mode": "dream", "controller.popsize": 32, "controller.generations": 20,
            "controller.eval_every": 10, "controller.eval_episodes": 16,
            "controller.real_max_steps": 0, **_BRANCH, **_DROPOUT, "rnn.reward_clip": 5.0,
            "iterate.rounds": 1, "iterate.episodes": 100, "iterate.models": 4}),
    # The first dream protocol (E1-E4 of docs/dream_experiments.md): full-length dreams from
    # the first frame, 4 rounds of 40 episodes.
    "dream-e1": Overlay(
        "the first dream protocol (E1-E4): CMA-ES 32 x 8 full dreams, 60 generations, 4 rounds "
        "of 40 episodes", {
            "controller.mode": "dream", "controller.popsize": 32,
            "controller.rollouts_per_candidate": 8, "controller.generations": 60,
            "controller.eval_every": 20, "controller.eval_episodes": 8,
            "controller.real_max_steps": 0, "iterate.rounds": 4, "iterate.episodes": 40}),
    # Dropout's Dream Land: E1-E2 of docs/dream_experiments.md, the shipped carracing agent.
    "dropout": Overlay(
        "Dropout's Dream Land masks: M trained with dropout 0.05 on z and h, dreamt with 0.1",
        _DROPOUT),
    # E5 of docs/dream_experiments.md: no exploit over 3 rounds.
    "branch": Overlay(
        "dreams of 200 steps branched from M's state on the newest real data, 32 per candidate",
        _BRANCH),
}
"""Partial presets, applied in the order named over a full preset of ``PRESETS``."""

DEFAULT_PRESET = "laptop"
"""The full preset of a command given no ``--preset`` (or only overlays)."""


# The product's default: C trained only in M's dream (issue "The dream works"). `laptop-dream`
# is its name from before session 21, kept so that older commands and run folders still work.
# Its round 1 is collected with one action offset per episode on steer and gas (CarRacing's
# action dimensions, so not part of the world-neutral `dream` overlay): E24, +62 +- 28 on the
# test over 3 paired seeds at the same real env steps.
# Two rounds on every seed, each M with 2 Cs in its dream in the rounds (1 in round 0, whose
# random-data dreams teach every C to circle): E27 and E28 of docs/dream_experiments.md, seeds
# 0 / 1 / 2 582.2 +- 57.6 on the test, where a second round only below a 300 validation and one C
# per M (E25) gave 347.4 +- 51.7.
ROUND1_OFFSET = {"collect.episode_offset": 0.15, "collect.action_noise_dims": "0,1"}
SECOND_ROUND = {"iterate.rounds": 2, "iterate.controllers": 2, "iterate.round0_controllers": 1}
PRESETS["laptop"] = replace(with_values(PRESETS["laptop-real"], {
    **OVERLAYS["dream"].values, **ROUND1_OFFSET, **SECOND_ROUND}), name="laptop")
PRESETS["laptop-dream"] = replace(PRESETS["laptop"], name="laptop-dream")

# The second world (the paper's section 4): VizDoom Take Cover, C trained only in M's dream.
# M has a done head and no reward head (a dream pays 1 per step survived), C one output
# mapped to left / stay / right. The paper: z 64, 512 LSTM units, 10,000 random episodes,
# C by CMA-ES with population 64 x 16 rollouts at temperature 1.15; its C survived
# 1092 +- 556 steps in the real game.
_DOOM = EnvConfig(env_id="worldmodels/DoomTakeCover-v0", max_steps=2100)
_DOOM_RNN = MDNRNNConfig(action_dim=1, predict_reward=False, reward_weight=0.0)
PRESETS["doom-debug"] = Preset(
    name="doom-debug",
    env=replace(_DOOM, max_steps=100),
    collect=CollectConfig(episodes=6, workers=2, policy="random"),
    vae=VAEConfig(epochs=1, batch_size=32, lr=1e-3, val_episodes=1),
    rnn=replace(_DOOM_RNN, hidden_size=64, seq_len=32, batch_size=8, epochs=2, val_episodes=1),
    controller=ControllerConfig(popsize=8, rollouts_per_candidate=2, generations=2,
                                dream_max_steps=100, eval_every=0, features="zch"),
    eval=EvalConfig(episodes=2),
)
# D22 of docs/dream_experiments.md (session 20: seeds 0 / 1 / 2 test 676.0 / 723.5 / 714.3 =
# 704.6 for the kept C, 717.8 for all 6 Cs, against 655.2 and 646.5 for D18's 500 episodes,
# M 60 epochs and 3 Cs; 39-40 minutes end to end on session 20's 2-core machine): 2,500
# sticky random episodes (each random action held 1-50 steps, so episodes reach the walls),
# V on as many images as before (2 epochs of 175k random frames), M on the same number of
# updates (12 epochs), dones sampled from M's done head, and 2 Cs in M's dream, each with its
# own CMA-ES seed, the C best on 32 validation episodes kept (C's seed decides as much as
# M's: D8). D9 / D10 (500 episodes, 60 epochs, 3 Cs) and D6 (4 Ms) came before.
PRESETS["doom-laptop"] = Preset(
    name="doom-laptop",
    env=_DOOM,
    collect=CollectConfig(episodes=2500, workers=2, policy="sticky"),
    vae=VAEConfig(z_dim=64, epochs=2, val_episodes=10, lr=1e-3, max_frames_per_epoch=175_000),
    # ~875k steps of ~350-step episodes: short sequences, so that M sees each of the ~2,500
    # deaths; 12 epochs are the updates 60 epochs of 500 episodes gave (D22).
    rnn=replace(_DOOM_RNN, z_dim=64, hidden_size=256, seq_len=100, batch_size=32, epochs=12,
                val_episodes=10),
    # No candidate's fitness is a real return: CMA-ES ranks them by dream returns alone; the
    # CMA mean is scored on 32 validation episodes (seeds disjoint from the test seeds) every
    # 20 generations, to keep the best checkpoint and to choose among the Cs.
    # C reads [z, h, c] as the paper's Doom C (D18, on the same Ms and CMA-ES seeds as [z, h]:
    # 27 validations 699.7 against 566.2, the 9 Cs' tests 646.5 against 591.0, fewer failed
    # Cs; the kept C of 3 tests 655.2 against 674.3 over seeds 0-2, within the draw).
    controller=ControllerConfig(popsize=32, rollouts_per_candidate=8, generations=60,
                                dream_max_steps=2100, temperature=1.15, sample_done=True,
                                eval_every=20, eval_episodes=32, features="zch"),
    eval=EvalConfig(episodes=100),
    iterate=IterateConfig(controllers=2),
)
PRESETS["doom-paper"] = Preset(
    name="doom-paper",
    env=_DOOM,
    collect=CollectConfig(episodes=10_000, policy="random"),
    vae=VAEConfig(z_dim=64, epochs=10, batch_size=100, lr=1e-4, val_episodes=100),
    rnn=replace(_DOOM_RNN, z_dim=64, hidden_size=512, seq_len=999, batch_size=100, epochs=20,
                val_episodes=100),
    controller=ControllerConfig(popsize=64, rollouts_per_candidate=16, generations=200,
                                dream_max_steps=2100, temperature=1.15, eval_every=0,
                                features="zch"),
    eval=EvalConfig(episodes=100),
)

ADDED_FIELDS: dict[str, Any] = {
    "dream_start": "first",
    "dropout": 0.0, "dream_dropout": 0.0, "exploit_gap": 150.0, "controller": "",
    "action_noise": 0.1, "brownian_share": 0.0, "reward_heads": 1, "reward_penalty": 0.0,
    "backend": "local", "ray_address": "", "reward_clip": 0.0, "reward_smooth": 0,
    "action_noise_dims": "", "patience": 0, "episode_offset": 0.0, "eval_start": 0,
    "done_logit_offset": 0.0, "features": "zh",
}
"""Config fields added after 0.1.0, with the value that behaves as 0.1.0 did: a run folder
started by 0.1.0 (whose config.json lacks them) resumes when they hold these values."""

REMOVED_FIELDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    # Collection stopped at the smaller of the two: at or above env's time limit, collect's
    # own limit never acted (the presets set them equal).
    "collect.max_steps": ("env.max_steps", operator.ge),
}
"""Config fields removed after 0.1.0 (``SECTION.FIELD``), each with the field that now carries its
meaning and the test ``(old value, that field's value)`` of an old value that behaved as that
field alone does now: a record written before (``RUN/preset.json``, ``rollouts/collect.json``)
is read without the removed field when the test holds, and refused when not (a config that
cannot be expressed any more; :func:`without_removed_fields`, ``runs.start_run``)."""


def without_removed_fields(data: dict, section: str = "") -> dict:
    """``data``, a config as stored, less its ``REMOVED_FIELDS``; a one-line ValueError when one
    held a value that the field that replaced it cannot express.

    ``data`` holds config sections under their names (a :class:`Preset` as a dict) and, when
    ``section`` is given, is itself that section's fields (``collect.json``: collect's fields,
    ``env`` under its name)."""
    out = {name: dict(value) if name in SECTIONS and isinstance(value, dict) else value
           for name, value in data.items()}
    found = {name: value for name, value in out.items()
             if name in SECTIONS and isinstance(value, dict)}
    if section:
        found[section] = out
    for removed, (kept, expressible) in REMOVED_FIELDS.items():
        (r_section, r_name), (k_section, k_name) = removed.split("."), kept.split(".")
        if r_name not in found.get(r_section, {}):
            continue
        old = found[r_section].pop(r_name)
        now = found.get(k_section, {}).get(k_name, getattr(SECTIONS[k_section](), k_name))
        if not expressible(old, now):
            raise ValueError(f"{removed} {old!r} with {kept} {now!r} cannot be expressed any "
                             f"more: {removed} was removed after 0.1.0, {kept} sets both")
    return out


def to_dict(cfg: Any) -> dict:
    """A config as plain JSON-able data (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, also an older version's (less its
    ``REMOVED_FIELDS``); unknown keys are an error."""
    data = without_removed_fields(data)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        ftype = known[name].type
        sub = _dataclass_types().get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        kwargs[name] = from_dict(sub, value) if sub is not None and isinstance(value, dict) else value
    return cls(**kwargs)


def _dataclass_types() -> dict[str, type]:
    return {c.__name__: c for c in (*SECTIONS.values(), Preset)}


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the docstring written under it."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
