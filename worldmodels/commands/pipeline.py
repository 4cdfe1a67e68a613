"""Run every stage of World Models: collect -> train-vae -> encode -> train-rnn ->
train-controller -> evaluate (with ``iterate.round0_models`` > 1, round 0's other Ms and
their Cs before evaluate, the best-validated C kept; with ``iterate.rounds`` > 0, the rounds of
``worldmodels.commands.iterate``).

Each stage resumes from its checkpoint and is skipped when its folder holds a finished
result, so rerunning the same command after a crash or Ctrl-C carries on where it stopped.
Stage options come from ``--preset`` (a full preset, then overlays applied in order) and can be
overridden with ``--SECTION.FIELD VALUE`` (sections: env, collect, vae, rnn, controller, eval,
iterate, cluster), e.g.::

    worldmodels pipeline --preset laptop --run-dir runs/laptop     # C only in M's dream
    worldmodels pipeline --preset laptop-real --run-dir runs/real   # C in the real env
    worldmodels pipeline --preset laptop-real --preset dream-e1 --preset dropout \
        --run-dir runs/e2 --iterate.rounds 2 --iterate.warm-start

``--cluster.backend ray`` (and ``--cluster.ray-address HOST:PORT``) runs collection,
C's training and the evaluation on a Ray cluster (``worldmodels.backends``).

Layout of RUN (``worldmodels.runs.RunLayout``): rollouts/, vae/, latents/, rnn/, controller/,
eval/results.json, tb/<stage>/. Wall time per stage accumulates in RUN/timings.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from ..cli import add_config_arguments, add_device_argument, add_preset_argument, preset_from_args
from ..config import SECTIONS, Preset, to_dict
from ..runs import RunConfigMismatch, RunLayout, print_already_finished
from ..utils import atomic_write_json, read_json, resolve_device

STAGES = ("collect", "train-vae", "encode", "train-rnn", "train-controller", "round0-models",
          "iterate", "evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    parser.add_argument("--run-dir", required=True, type=Path,
                        help="folder holding every stage's output (created; reused to resume)")
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1],
                        help="stop after this stage (default: evaluate)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_device_argument(parser)
    for section in SECTIONS:
        add_config_arguments(parser, section)


def run_pipeline(run_dir: Path, preset: Preset, device: str = "auto", until: str = "evaluate",
                 progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage; returns the evaluation summary (or {} if stopped early)."""
    from .collect import collect_rollouts
    from .encode import encode_rollouts
    from .evaluate import describe, evaluate_agent
    from .iterate import choose_round0, run_rounds
    from .train_controller import train_controller
    from .train_rnn import train_rnn
    from .train_vae import train_vae

    run_dir = Path(run_dir)
    resolve_device(device)  # a missing GPU is refused before the run folder exists
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file, not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    layout = RunLayout(run_dir)
    # preset.json describes the run: written at once for a new run, and otherwise when a run
    # went through (a rerun with options a stage refuses leaves it as it was).
    if not layout.preset.exists():
        atomic_write_json(layout.preset, to_dict(preset))
    paths = {"rollouts": layout.rollouts, "vae": layout.vae, "latents": layout.latents,
             "rnn": layout.rnn, "controller": layout.controller_best, "eval": layout.results}
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("collect", lambda: collect_rollouts(paths["rollouts"], preset.collect, preset.env,
                                             progress=progress, cluster=preset.cluster)),
        ("train-vae", lambda: train_vae(paths["rollouts"], layout.vae_dir, preset.vae,
                                        device=device, tb_dir=layout.tb("vae"),
                                        progress=progress)),
        ("encode", lambda: encode_rollouts(paths["rollouts"], paths["vae"], paths["latents"],
                                           device=device, progress=progress)),
        ("train-rnn", lambda: train_rnn(paths["latents"], layout.rnn_dir, preset.rnn,
                                        device=device, tb_dir=layout.tb("rnn"),
                                        progress=progress)),
        ("train-controller", lambda: train_controller(
            paths["vae"], paths["rnn"], layout.controller_dir, preset.controller, preset.env,
            device=device, tb_dir=layout.tb("controller"), progress=progress,
            cluster=preset.cluster, branch_data=[paths["latents"]])),
        # Round 0's other Ms and Cs, the best-validated C kept (iterate.round0_models,
        # .round0_controllers or else .controllers).
        ("round0-models", lambda: choose_round0(run_dir, preset, device=device, progress=progress)
            if preset.iterate.round0_models > 1 or preset.iterate.round0_cs > 1 else None),
        # Rounds of collect-with-C -> M -> C in the dream (skipped when iterate.rounds = 0).
        ("iterate", lambda: run_rounds(run_dir, preset, paths["controller"], device=device,
                                       progress=progress) if preset.iterate.rounds > 0 else None),
        # A results.json that already scores this controller is kept: a finished stage is
        # not redone (it would replay every evaluation episode).
        ("evaluate", lambda: _finished_evaluation(paths["eval"], paths["controller"], preset)
            or evaluate_agent(paths["controller"], episodes=preset.eval.episodes,
                              workers=preset.eval.workers, env_cfg=preset.env,
                              use_mu=preset.eval.use_mu, device=device,
                              out_path=paths["eval"], progress=progress,
                              cluster=preset.cluster)),
    ]
    timings: dict[str, float] = read_json(layout.timings) if layout.timings.exists() else {}
    summary: dict[str, Any] = {}
    for name, step in steps:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            result = step()
        except RunConfigMismatch as e:
            hint = _preset_hint(layout.preset, preset)
            if hint is None:
                raise
            raise RunConfigMismatch(f"{e}. {hint}") from None
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 1)
        atomic_write_json(layout.timings, timings)
        if name in ("train-controller", "round0-models", "iterate") and result is not None:
            # controller_best.pt, or controller.pt when C ran no real evaluation
            # (eval_every=0); after iterate, the C of the round with the best validation score
            paths["controller"] = Path(result)
            paths["rnn"] = _kept_rnn(layout, name) or paths["rnn"]
        if name == "evaluate":
            summary = result
        if name == until:
            break
    atomic_write_json(layout.preset, to_dict(preset))
    print(f"\nrun folder: {run_dir}")
    for key, path in paths.items():
        if path.exists():
            print(f"  {key:<11} {path}")
    print(f"  tensorboard --logdir {layout.tb()}")
    print("  wall time (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if summary:
        print(f"\nscore: {describe(summary)}")
    return summary


def _kept_rnn(layout: RunLayout, stage: str) -> Path | None:
    """The M of the C that stage ``round0-models`` or ``iterate`` kept (None: unknown)."""
    if stage == "round0-models" and layout.round0_models.exists():
        return Path(read_json(layout.round0_models)["chosen"]["rnn"])
    if stage == "iterate" and layout.iterate_summary.exists():
        summary = read_json(layout.iterate_summary)
        kept = summary["rounds"][summary["chosen"]["round"]]
        if kept.get("rnn"):
            return Path(kept["rnn"])
        return _kept_rnn(layout, "round0-models")
    return None


def _preset_hint(path: Path, preset: Preset) -> str | None:
    """What to pass to resume a run folder whose stages refuse ``preset``, from the preset its
    ``path`` (RUN/preset.json, written only before and after the stages) recorded: None when
    it recorded this very preset or another one of the same name, or nothing readable."""
    try:
        recorded = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded == to_dict(preset):
        return None
    name = recorded.get("name", "?")
    controller = recorded.get("controller")
    mode = controller.get("mode") if isinstance(controller, dict) else None
    if name == "laptop" and mode == "real" and preset.controller.mode != "real":
        return (f"This run folder ({path}) was started with the `laptop` of before session 21, "
                f"which trained C in the real env: that preset is now `laptop-real` (`laptop` "
                f"trains C in M's dream); pass --preset laptop-real to resume it")
    collect = recorded.get("collect")
    offset = collect.get("episode_offset", 0.0) if isinstance(collect, dict) else None
    if (name in ("laptop", "laptop-dream") and mode == "dream" and offset == 0.0
            and preset.collect.episode_offset > 0):
        return (f"This run folder ({path}) was started with the `laptop` of session 21, whose "
                f"round 1 was collected without the episode offset (E23); pass "
                f"--collect.episode-offset 0 --collect.action-noise-dims '' --iterate.rounds 1 to "
                f"resume it as it ran")
    if name == preset.name:
        return None   # the same preset, other options: the stage's message says which
    return (f"This run folder was started with --preset {name} ({path}; this run asks for "
            f"--preset {preset.name}): pass the preset and options it ran with to resume it")


def _finished_evaluation(results: Path, controller: Path, preset: Preset) -> dict[str, Any] | None:
    """The results in ``results`` if they already score ``controller`` (same file, by sha256)
    on the episodes and env ``preset`` asks for, else None (evaluate again)."""
    from ..checkpoint import checkpoint_sha256
    from ..seeds import test_seeds

    if not (results.is_file() and controller.is_file()):
        return None
    try:
        old = read_json(results)
    except ValueError:  # unreadable: evaluate again (the file is rewritten atomically)
        return None
    if not isinstance(old, dict):
        return None
    wanted = {"controller_sha256": checkpoint_sha256(controller),
              "seeds": test_seeds(preset.eval.episodes), "env_id": preset.env.env_id,
              "max_steps": preset.env.max_steps, "use_mu": preset.eval.use_mu}
    if any(old.get(key) != value for key, value in wanted.items()):
        return None
    print_already_finished("evaluate", results, "it scores this controller on these episodes")
    return old


def run(args: argparse.Namespace) -> int:
    preset = preset_from_args(args)
    run_pipeline(args.run_dir, preset, device=args.device, until=args.until,
                 progress=not args.no_progress)
    return 0
