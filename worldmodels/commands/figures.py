"""Draw the README's figures (PNG) from a pipeline run folder.

  worldmodels figures --run-dir RUN                   # all three, into RUN/figures
  worldmodels figures --run-dir RUN --only learning_curves --out docs/img

Figures and the files of RUN each one reads:
  reconstruction.png   real frames of V's held-out episodes (the last ``val_episodes`` of the
                       manifest, as in train-vae) over V's reconstructions decode(mu).
                       Reads vae/vae.pt, rollouts/manifest.jsonl and its shards.
  dream_strip.png      top: M dreaming (decoded through V) from a real frame of a held-out
                       episode, driven by the trained C inside the dream, every --every steps;
                       below: that real episode and M's open-loop prediction from the same
                       frame with the episode's own actions (as `worldmodels dream --open-loop`).
                       Reads vae/vae.pt, rnn/mdnrnn.pt, controller/controller_best.pt (or
                       controller.pt), rollouts/.
  learning_curves.png  V's loss (train, val), M's loss (train, val), C's ES fitness
                       (best/mean/worst dream return per generation) with the periodic real-env
                       evaluations and, when eval/results.json exists, the final test score.
                       Reads tb/{vae,rnn,controller}/scalars.csv (or vae/tb/scalars.csv ...,
                       where the stage commands run on their own write them). Drawn with
                       matplotlib, the optional [figures] extra.
  sample_efficiency.png
                       the score of C against the real env steps used to get it, the plot
                       model-based RL is judged by: each validation of C (mean over the
                       validation tracks) at the real steps used so far (collection, real-env
                       fitness, validation), and the final test score (eval/results.json) at
                       the run's total. Runs of `iterate` give one point per round (the best
                       validation of that round's C, at iterate.json's cumulative steps).
                       --compare RUN2 ... overlays other runs (e.g. the real-env protocol
                       against the dream one). Reads iterate.json, or rollouts/manifest.jsonl
                       and the controller's done.json and scalars.csv; matplotlib.

A missing input is an error naming the file; with --skip-missing the figure (or learning-curve
panel) is skipped with a printed note instead. Every PNG is written atomically.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from ..cli import CLIError, add_device_argument, positive_int
from ..runs import TB, RunLayout
from ..utils import atomic_write_bytes, read_json, resolve_device
from ..video import diff_image, draw_text, hstack_panels, upscale

if TYPE_CHECKING:  # matplotlib is imported where it plots: `import worldmodels` needs none
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.legend import Legend

FIGURES = ("reconstruction", "dream_strip", "learning_curves", "sample_efficiency")
PANEL = 128          # default side of a frame in the image grids (64 x 64 frames, upscaled)
GRID_BG = (24, 24, 24)
LABEL_WIDTH = 190    # the column of row labels in the image grids
CURVE_STAGES = ("vae", "rnn", "controller")  # the panels of learning_curves.png, tb/<stage>
TITLE_SCALE, TITLE_LINE = 0.6, 22  # font scale of grid titles; pixels per line of them
GAP = 4              # pixels between the rows of an image grid
FONT = cv2.FONT_HERSHEY_SIMPLEX  # video.draw_text's font, to measure titles for wrapping


class MissingInput(FileNotFoundError):
    """A file a figure needs is not in the run folder (that stage has not run or finished)."""


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True, type=Path, metavar="RUN",
                        help="run folder of `worldmodels pipeline` (rollouts/, vae/, rnn/, "
                             "controller/, eval/, tb/)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write the PNGs (default: RUN/figures)")
    parser.add_argument("--only", action="append", choices=FIGURES, default=None, metavar="NAME",
                        help=f"draw only this figure ({', '.join(FIGURES)}); repeatable "
                             "(default: all)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip a figure (or a learning-curve panel) whose input files are "
                             "missing, with a printed note; without it a missing file is an "
                             "error naming the file (exit status 2)")
    parser.add_argument("--size", type=positive_int, default=PANEL,
                        help=f"side in pixels of each frame in the image grids, 64 x 64 frames "
                             f"upscaled with nearest pixels (default: {PANEL})")
    parser.add_argument("--frames", type=positive_int, default=8,
                        help="frames (columns) in reconstruction.png (default: 8)")
    parser.add_argument("--steps", type=positive_int, default=100,
                        help="dream steps in dream_strip.png (default: 100)")
    parser.add_argument("--every", type=positive_int, default=10,
                        help="dream_strip.png shows every N-th step, 0 and --steps included "
                             "(default: 10)")
    parser.add_argument("--episode", type=int, default=None,
                        help="manifest index of the real episode of dream_strip.png (default: "
                             "the first of V's held-out episodes with more than --steps frames, "
                             "else the longest)")
    parser.add_argument("--start", type=int, default=0,
                        help="frame of that episode the dreams start from (default: 0, the "
                             "frame C's training dreams start from)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="dream temperature of dream_strip.png (default: the one C was "
                             "trained at)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dream noise (default: 0)")
    parser.add_argument("--compare", type=Path, nargs="+", default=[], metavar="RUN",
                        help="sample_efficiency: other run folders drawn beside RUN")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise CLIError(f"--run-dir {run_dir}: no such folder")
    for name in ("size", "frames", "steps", "every"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.start < 0:
        raise CLIError(f"--start must be >= 0, got {args.start}")
    out = Path(args.out) if args.out is not None else run_dir / "figures"
    device = resolve_device(args.device)
    makers: dict[str, Callable[[], np.ndarray]] = {
        "reconstruction": lambda: reconstruction_figure(
            run_dir, n_frames=args.frames, size=args.size, device=device),
        "dream_strip": lambda: dream_strip_figure(
            run_dir, steps=args.steps, every=args.every, episode=args.episode,
            start=args.start, temperature=args.temperature, seed=args.seed, size=args.size,
            device=device),
        "learning_curves": lambda: learning_curves_figure(run_dir, skip_missing=args.skip_missing),
        "sample_efficiency": lambda: sample_efficiency_figure([run_dir, *args.compare]),
    }
    for other in args.compare:
        if not Path(other).is_dir():
            raise CLIError(f"--compare {other}: no such folder")
    # Inputs are checked before anything is drawn: a missing file fails fast, with no
    # figure half-made.
    todo = []
    for name in dict.fromkeys(args.only or FIGURES):
        try:
            check_inputs(run_dir, name, args.skip_missing)
        except MissingInput as e:
            if not args.skip_missing:
                raise
            print(f"figures: skipping {name}.png: {e}")
            continue
        todo.append(name)
    stages = {"reconstruction": ("vae",), "dream_strip": ("vae", "rnn", "controller")}
    for stage in dict.fromkeys(st for name in todo for st in stages.get(name, ())):
        note_unfinished(run_dir / stage)
    written = []
    for name in todo:
        image = makers[name]()
        path = write_png(out / f"{name}.png", image)
        written.append(path)
        print(f"wrote {path} ({image.shape[1]} x {image.shape[0]})")
    if not written:
        print("figures: no figure written")
    return 0


# ---------------------------------------------------------------------------------------------
# Run-folder inputs


def require(path: Path, what: str) -> Path:
    """``path`` if it is a file, else :class:`MissingInput` naming it and what produces it."""
    if not path.is_file():
        raise MissingInput(f"missing {path} ({what})")
    return path


def vae_path(run_dir: Path) -> Path:
    return require(RunLayout(run_dir).vae, "V: run train-vae first")


def rnn_path(run_dir: Path) -> Path:
    return require(RunLayout(run_dir).rnn, "M: run train-rnn first")


def controller_path(run_dir: Path) -> Path:
    """controller_best.pt (the best real evaluation), else controller.pt (the CMA mean)."""
    best = RunLayout(run_dir).controller_best
    if best.is_file():
        return best
    return require(RunLayout(run_dir).controller,
                   f"C: run train-controller first; nor is there {best}")


def rollout_entries(run_dir: Path) -> tuple[Path, list[dict]]:
    from ..data import MANIFEST, read_manifest

    folder = RunLayout(run_dir).rollouts
    require(folder / MANIFEST, "the rollouts: run collect first")
    entries = read_manifest(folder)
    if not entries:
        raise MissingInput(f"{folder / MANIFEST} lists no finished episode (run collect first)")
    return folder, entries


def held_out(entries: list[dict], val_episodes: int) -> list[dict]:
    """V's held-out episodes: the last ``val_episodes`` of the manifest (as train-vae splits).

    With none held out, or no more episodes than that, every episode is returned (then
    train-vae could not have run on this manifest; a hand-made folder).
    """
    if 0 < val_episodes < len(entries):
        return entries[-val_episodes:]
    print(f"figures: V holds out val_episodes={val_episodes} of {len(entries)} episodes; "
          "drawing from all of them")
    return list(entries)


def check_inputs(run_dir: Path, name: str, skip_missing: bool = False) -> None:
    """Raise :class:`MissingInput` naming the first file figure ``name`` needs that is missing.

    learning_curves needs the three scalars.csv files, or (``skip_missing``) any one of them.
    """
    if name in ("reconstruction", "dream_strip"):
        vae_path(run_dir)
        if name == "dream_strip":
            rnn_path(run_dir)
            controller_path(run_dir)
        rollout_entries(run_dir)
    elif name == "learning_curves":
        require_matplotlib()
        found, missing = 0, None
        for stage in CURVE_STAGES:
            try:
                scalars_csv(run_dir, stage)
                found += 1
            except MissingInput as e:
                missing = missing or e
        if missing is not None and (not skip_missing or not found):
            raise missing
    elif name == "sample_efficiency":
        require_matplotlib()
        efficiency_points(run_dir)
    else:
        raise ValueError(f"unknown figure {name!r}; choose from {FIGURES}")


def note_unfinished(folder: Path) -> None:
    from ..runs import is_done

    if not is_done(folder):
        print(f"figures: note: {folder} has no done.json (its stage has not finished); "
              "using its latest checkpoint")


def scalars_csv(run_dir: Path, stage: str) -> Path:
    """RUN/tb/<stage>/scalars.csv (the pipeline's), else RUN/<stage>/tb/scalars.csv."""
    main, alone = RunLayout(run_dir).tb(stage) / "scalars.csv", run_dir / stage / TB / "scalars.csv"
    if main.is_file():
        return main
    if alone.is_file():
        return alone
    raise MissingInput(f"missing {main} (nor {alone}): the {stage} stage has not logged yet")


def read_scalars(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ``step,tag,value`` CSV of :class:`worldmodels.logger.Logger` -> tag: (steps, values).

    Sorted by step. A resumed stage appends to the same file and may log a step again; the
    last value logged for a step wins (it belongs to the run that went on).
    """
    series: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["step", "tag", "value"]:
            raise ValueError(f"{path}: not a scalars.csv of worldmodels.logger "
                             f"(header {header}, expected step,tag,value)")
        for n, row in enumerate(reader, 2):
            if len(row) != 3:
                continue  # a line cut short by a crash
            try:
                step, value = int(row[0]), float(row[2])
            except ValueError:
                raise ValueError(f"{path}: line {n} is not step,tag,value: {row}") from None
            series.setdefault(row[1], {})[step] = value
    out = {}
    for tag, points in series.items():
        steps = np.array(sorted(points), dtype=np.float64)
        out[tag] = steps, np.array([points[int(s)] for s in steps], dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------------
# Image grids


def frame_row(frames: Sequence[np.ndarray], labels: Sequence[str], size: int) -> np.ndarray:
    """Frames side by side, upscaled to ``size`` (nearest), each label in its top-left corner."""
    scale = max(0.4, size / 300)
    panels = [upscale(f, size) for f in frames]
    panels = [draw_text(p, label, scale=scale) if label else p for p, label in zip(panels, labels)]
    return hstack_panels(panels)


def grid(blocks: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]]) -> np.ndarray:
    """Stack ``(title, [(row label, row image), ...])`` blocks: a title strip over each block,
    each row with its label in a column on the left; a dark background."""
    width = max(row.shape[1] for _, rows in blocks for _, row in rows)
    parts = []
    for title, rows in blocks:
        if title:
            text = wrap(title, LABEL_WIDTH + width - 12, TITLE_SCALE)
            strip = np.full((TITLE_LINE * (text.count("\n") + 1) + 12, LABEL_WIDTH + width, 3),
                            GRID_BG, np.uint8)
            parts.append(draw_text(strip, text, org=(6, 6), scale=TITLE_SCALE,
                                   color=(255, 230, 150)))
        for label, row in rows:
            h = row.shape[0]
            cell = np.full((h, LABEL_WIDTH, 3), GRID_BG, np.uint8)
            cell = draw_text(cell, label, org=(6, 6), scale=0.5)
            pad = np.full((h, width - row.shape[1], 3), GRID_BG, np.uint8)
            parts.append(np.concatenate([cell, row, pad], axis=1))
            parts.append(np.full((GAP, LABEL_WIDTH + width, 3), GRID_BG, np.uint8))
    return np.concatenate(parts[:-1] if parts else parts, axis=0)


def wrap(text: str, width: int, scale: float) -> str:
    """``text`` with line breaks, so that each line fits in ``width`` pixels (draw_text's font)."""
    lines: list[str] = []
    for word in text.split(" "):
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, scale, 1)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return "\n".join(lines)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    return atomic_write_bytes(path, data.tobytes())


# ---------------------------------------------------------------------------------------------
# reconstruction.png


def reconstruction_figure(run_dir: Path, n_frames: int = 8, size: int = PANEL,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Held-out real frames (top row) over V's reconstructions decode(mu) (bottom row).

    The frames are evenly spread over the held-out episodes, concatenated (the middle of
    ``n_frames`` equal parts), so each column usually comes from another episode.
    """
    from ..data import read_episode
    from ..vae import load_vae, reconstruction_grid

    path = vae_path(run_dir)
    folder, entries = rollout_entries(run_dir)
    vae, ckpt = load_vae(path, device=device)
    episodes = held_out(entries, int(ckpt["config"].get("val_episodes", 0)))
    lengths = np.array([int(e["length"]) for e in episodes])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    positions = ((np.arange(n_frames) + 0.5) * starts[-1] / n_frames).astype(np.int64)
    frames, labels, cache = [], [], {}
    for pos in positions:
        i = int(np.searchsorted(starts, pos, side="right") - 1)
        if i not in cache:
            cache[i] = read_episode(folder, episodes[i], keys=["obs"])["obs"]
        t = int(pos - starts[i])
        frames.append(cache[i][t])
        labels.append(f"ep {episodes[i]['index']} t={t}")
    both = reconstruction_grid(vae, np.stack(frames), torch.device(device))
    real = frame_row(np.split(both[:64], n_frames, axis=1), labels, size)
    recon = frame_row(np.split(both[64:], n_frames, axis=1), [""] * n_frames, size)
    title = (f"V: frames of held-out episodes and their reconstructions decode(mu), "
             f"z_dim={vae.z_dim}")
    return grid([(title, [("real\n(held out)", real), ("V's\nreconstruction", recon)])])


# ---------------------------------------------------------------------------------------------
# dream_strip.png


def dream_with_controller(dream, controller: torch.nn.Module, z0: torch.Tensor, steps: int,
                          seed: int) -> tuple[torch.Tensor, list[float], list[bool]]:
    """One dream from latent ``z0`` (1 x Z), C acting on [z, h] (or [z, h, c]) each step.

    Returns the latents z_0..z_steps (steps + 1 x Z), the return so far and whether M had
    ended the dream, at each of them (a dream that ended stays frozen).
    """
    z, h = dream.reset(1, seed, z=z0)
    zs, returns, dones, ret = [z[0]], [0.0], [False], 0.0
    with torch.inference_mode():
        for _ in range(steps):
            action = controller(z, h, dream.c)
            z, h, reward, done = dream.step(action)
            ret += float(reward[0])
            zs.append(z[0])
            returns.append(ret)
            dones.append(bool(done[0]))
    return torch.stack(zs), returns, dones


def pick_episode(entries: list[dict], episodes: list[dict], index: int | None,
                 frames_needed: int) -> dict:
    if index is not None:
        match = [e for e in entries if int(e["index"]) == index]
        if not match:
            raise CLIError(f"--episode {index} is not in the manifest; episodes "
                           f"{entries[0]['index']}..{entries[-1]['index']} are")
        return match[0]
    long_enough = [e for e in episodes if int(e["length"]) >= frames_needed]
    return long_enough[0] if long_enough else max(episodes, key=lambda e: int(e["length"]))


def dream_strip_figure(run_dir: Path, steps: int = 100, every: int = 10,
                       episode: int | None = None, start: int = 0,
                       temperature: float | None = None, seed: int = 0, size: int = PANEL,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """M's dream driven by C, then the open-loop comparison, every ``every``-th step."""
    from worldmodels.agents.world_models_agent import load_controller

    from ..checkpoint import check_parent
    from ..data import read_episode
    from ..dream import BatchedDream, dream_kwargs, predict_open_loop
    from ..vae import decode_frames as decode
    from ..vae import frames_to_tensor, load_vae
    from ..worlds import world_of_action_map

    v_path, m_path, c_path = vae_path(run_dir), rnn_path(run_dir), controller_path(run_dir)
    folder, entries = rollout_entries(run_dir)
    vae, v_ckpt = load_vae(v_path, device=device)
    controller, c_ckpt = load_controller(c_path)
    check_parent(c_ckpt, "vae_sha256", v_path)     # C of this run's V and M, or a clear error
    check_parent(c_ckpt, "mdnrnn_sha256", m_path)
    controller = controller.to(device)
    c_cfg = c_ckpt.get("config", {})
    tau = float(c_cfg.get("temperature", 1.0)) if temperature is None else temperature

    episodes = held_out(entries, int(v_ckpt["config"].get("val_episodes", 0)))
    entry = pick_episode(entries, episodes, episode, start + steps + 1)
    ep = read_episode(folder, entry)
    real, actions = ep["obs"], ep["action"]
    if start >= len(real):
        raise CLIError(f"--start {start}: episode {entry['index']} has {len(real)} frames")
    real, actions = real[start:], actions[start:]
    with torch.inference_mode():
        mu, _ = vae.encode(frames_to_tensor(torch.from_numpy(real[:1]).to(device)))

    # C drives, with the settings of its training dreams.
    world = world_of_action_map(controller.action_map)
    dream = BatchedDream.from_checkpoint(m_path, device=device, vae_path=v_path,
                                         **dream_kwargs(c_cfg, world, temperature=tau,
                                                        max_steps=10**9))
    zs, returns, dones = dream_with_controller(dream, controller, mu, steps, seed)
    dreamt = decode(vae, zs)
    shown = list(range(0, steps + 1, every))
    if shown[-1] != steps:
        shown.append(steps)
    labels = [f"t={t}\nR={returns[t]:.1f}" + ("\nended" if dones[t] else "") for t in shown]
    blocks = [(f"M's dream (decoded by V), driven by C, from a real frame (episode "
               f"{entry['index']}, t={start}); temperature {tau:g}",
               [("dream,\nC drives", frame_row(list(dreamt[shown]), labels, size))])]

    # Open loop: the same start, the episode's own actions; M never sees another real frame.
    ol_steps = min(steps, len(real) - 1)
    real_label = "real\n(held out)" if entry in episodes else "real\n(training ep.)"
    if ol_steps >= 1:
        ol_dream = BatchedDream.from_checkpoint(m_path, device=device, vae_path=v_path,
                                                temperature=tau, max_steps=10**9,
                                                done_threshold=1.0, action_map=world.action_map,
                                                reward=world.dream_reward)
        ol_real, pred, err = predict_open_loop(vae, ol_dream, real, actions, ol_steps, seed)
        cols = [t for t in shown if t <= ol_steps]
        blocks.append((
            "open loop: the real episode, and M's prediction from the same frame and the "
            "same (data-collection) actions",
            [(real_label, frame_row(list(ol_real[cols]), [f"t={start + t}" for t in cols], size)),
             ("M, open loop", frame_row(list(pred[cols]), [""] * len(cols), size)),
             ("|difference|", frame_row([diff_image(ol_real[t], pred[t]) for t in cols],
                                        [f"err {err[t]:.3f}" for t in cols], size))]))
    else:
        print(f"figures: episode {entry['index']} has no frame after t={start}; "
              "no open-loop comparison")
    return grid(blocks)


# ---------------------------------------------------------------------------------------------
# learning_curves.png: matplotlib, imported here only (not a core dependency)

PANEL_INCHES, DPI = (6.4, 4.2), 100  # each learning-curve panel: 640 x 420 pixels


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError('learning_curves.png needs matplotlib, which is not installed: '
                       'pip install "worldmodels[figures]"') from None


def smooth(y: np.ndarray) -> np.ndarray:
    """Centred moving average over about len / 30 points, narrowing symmetrically towards
    the ends (the first and last points are kept): no lag, no bias at the ends of a trend."""
    n = len(y)
    c = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
    i = np.arange(n)
    k = np.minimum(np.minimum(i, n - 1 - i), n // 60)
    lo, hi = i - k, i + k + 1
    return (c[hi] - c[lo]) / (hi - lo)


def loss_panel(ax: Axes, scalars: dict[str, tuple[np.ndarray, np.ndarray]], prefix: str,
               path: Path, title: str) -> None:
    """Train loss (faint raw values under their moving average) and the val loss."""
    train, val = scalars.get(f"{prefix}/loss"), scalars.get(f"{prefix}/val_loss")
    if train is None and val is None:
        raise ValueError(f"{path} has neither {prefix}/loss nor {prefix}/val_loss")
    if train is not None:
        x, y = train
        if len(y) > 30:
            ax.plot(x, y, color="C0", alpha=0.3, linewidth=0.8)
            ax.plot(x, smooth(y), color="C0", linewidth=2, label="train (moving average)")
        else:
            ax.plot(x, y, "o-" if len(y) < 10 else "-", color="C0", linewidth=2, label="train")
    if val is not None:
        ax.plot(*val, "o-", color="C1", linewidth=2, markersize=5, label="validation")
    values = np.concatenate([s[1] for s in (train, val) if s is not None])
    if values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")  # a loss that falls by orders of magnitude
    ax.set(title=title, xlabel="step", ylabel="loss")


def es_panel(ax: Axes, scalars: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
             results: dict | None) -> None:
    """ES best/mean/worst fitness per generation (the population's range shaded), the periodic
    real-env evaluations (mean +- std) and the final test score."""
    from matplotlib.ticker import MaxNLocator

    need = ("es/fitness_best", "es/fitness_mean", "es/fitness_worst")
    missing = [t for t in need if t not in scalars]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}")
    x = scalars["es/fitness_mean"][0]
    best, mean, worst = (scalars[t][1] for t in need)
    n = min(len(best), len(mean), len(worst))
    x, best, mean, worst = x[:n], best[:n], mean[:n], worst[:n]
    style = "o-" if n < 10 else "-"
    ax.fill_between(x, worst, best, color="C0", alpha=0.15, linewidth=0)
    ax.plot(x, best, style, color="C0", linewidth=2, markersize=4, label="ES best")
    ax.plot(x, mean, style, color="C0", alpha=0.7, linewidth=1.2, markersize=3, label="ES mean")
    ax.plot(x, worst, style, color="C0", alpha=0.4, linewidth=1.2, markersize=3,
            label="ES worst")
    if "eval/real_return_mean" in scalars:
        ex, ey = scalars["eval/real_return_mean"]
        std = scalars.get("eval/real_return_std")
        yerr = std[1] if std is not None and len(std[1]) == len(ey) else None
        label = "real env (CMA mean)" + (" ± std" if yerr is not None else "")
        ax.errorbar(ex, ey, yerr=yerr, fmt="o-", color="C1", linewidth=2, markersize=5,
                    capsize=4, label=label)
    if results and "summary" in results:
        s = results["summary"]
        ax.axhline(float(s["mean"]), color="C2", linestyle="--", linewidth=2,
                   label=f"test: {s['mean']:.0f} ± {s['std']:.0f} ({s['episodes']} episodes)")
    # Only dream-mode training logs dream/return_mean; real-mode fitness is real returns.
    where = "dream" if "dream/return_mean" in scalars else "real-env"
    ax.set(title=f"C: CMA-ES fitness = mean {where} return", xlabel="generation",
           ylabel="return")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def clear_legend(legend: Legend, renderer: RendererBase) -> None:
    """Where the legend (placed "best", after a draw) still crosses a curve, stretch the y axis
    upwards so the data leaves a free band at the top, and put the legend there."""
    ax = legend.axes
    box = legend.get_window_extent(renderer)
    if not any(line.get_transform().transform_path(line.get_path()).intersects_bbox(box, False)
               for line in ax.get_lines()):
        return
    free = box.height / ax.get_window_extent(renderer).height + 0.05
    scale = ax.yaxis.get_transform()  # linear or log: stretch in the axis' own units
    lo, hi = scale.transform(ax.get_ylim())
    bottom, top = scale.inverted().transform([lo, lo + (hi - lo) / (1 - free)])
    ax.set_ylim(float(bottom), float(top))
    legend.set_loc("upper right")


def learning_curves_figure(run_dir: Path, skip_missing: bool = False) -> np.ndarray:
    """V's, M's and C's curves side by side (RGB uint8, 640 x 420 pixels a panel); a panel
    whose scalars.csv is missing is an error (MissingInput), or left out with ``skip_missing``."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    makers = {
        "vae": lambda ax, s, p: loss_panel(ax, s, "vae", p, "V: ConvVAE loss (recon + KL)"),
        "rnn": lambda ax, s, p: loss_panel(ax, s, "mdnrnn", p,
                                           "M: MDN-RNN loss (GMM NLL + reward + done)"),
        "controller": lambda ax, s, p: es_panel(ax, s, p, _results(run_dir)),
    }
    found = []
    for stage in CURVE_STAGES:
        try:
            found.append((stage, scalars_csv(run_dir, stage)))
        except MissingInput as e:
            if not skip_missing:
                raise
            print(f"figures: learning_curves: leaving out the {stage} panel: {e}")
    if not found:
        raise MissingInput(f"no scalars.csv under {RunLayout(run_dir).tb()}: no stage has logged yet")
    # A Figure on the Agg canvas, not pyplot: no global state, no display needed.
    fig = Figure(figsize=(PANEL_INCHES[0] * len(found), PANEL_INCHES[1]), dpi=DPI,
                 layout="constrained")
    legends = []
    for ax, (stage, path) in zip(fig.subplots(1, len(found), squeeze=False)[0], found):
        makers[stage](ax, read_scalars(path), path)
        ax.grid(alpha=0.3)
        legends.append(ax.legend(loc="best", fontsize="small"))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # places the legends
    for legend in legends:
        clear_legend(legend, canvas.get_renderer())
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _results(run_dir: Path) -> dict | None:
    path = RunLayout(run_dir).results
    return read_json(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Sample efficiency: score against real env steps


class EfficiencyPoints(NamedTuple):
    """One run's curve: validation scores at the real env steps used so far, and the test."""

    label: str
    steps: list[int]          # real env steps used when each validation finished
    scores: list[float]       # mean validation return of C there
    test_steps: int | None    # the run's total real env steps (where the test C was chosen)
    test: tuple[float, float] | None  # mean and std of the test episodes (eval/results.json)


def efficiency_points(run_dir: Path) -> EfficiencyPoints:
    """The points of ``sample_efficiency.png`` for one run folder (MissingInput if it has
    neither an iterate.json nor a collection and a finished or started controller)."""
    from ..data import MANIFEST, read_manifest

    layout = RunLayout(run_dir)
    results = _results(run_dir)
    test = None
    if results and "summary" in results:
        test = (float(results["summary"]["mean"]), float(results["summary"]["std"]))
    if layout.iterate_summary.is_file():  # iterate: one point per round
        summary = read_json(layout.iterate_summary)
        rounds = [r for r in summary["rounds"] if r.get("best_val_return") is not None]
        return EfficiencyPoints(run_dir.name, [int(r["real_steps_cumulative"]) for r in rounds],
                                [float(r["best_val_return"]) for r in rounds],
                                int(summary["real_steps_total"]), test)
    require(layout.rollouts / MANIFEST, "the rollouts: run collect first")
    collect = sum(int(e["length"]) for e in read_manifest(layout.rollouts))
    scalars = {}
    try:
        scalars = read_scalars(scalars_csv(run_dir, "controller"))
    except MissingInput:
        pass
    done = layout.controller_dir / "done.json"
    finished, best = None, None  # a finished C: everything its stage used, its best validation
    if done.is_file():
        record = read_json(done)
        finished = (collect + int(record.get("real_steps", 0))
                    + int(record.get("train_real_steps", 0)))
        best = record.get("best_real")
    if "eval/real_steps" in scalars:  # every validation at its own step count
        at = dict(zip(*scalars["eval/real_steps"]))  # generation -> steps, as the returns
        pairs = [(collect + int(at[g]), float(v))
                 for g, v in zip(*scalars.get("eval/real_return_mean", ([], []))) if g in at]
        steps, scores = [a for a, _ in pairs], [b for _, b in pairs]
    elif finished is None:
        raise MissingInput(f"missing {done} (C: run train-controller first)")
    else:  # runs logged before eval/real_steps existed: their best validation at their total
        steps, scores = ([finished], [float(best)]) if best is not None else ([], [])
    # a C still training: up to its last validation
    total = finished if finished is not None else (steps[-1] if steps else collect)
    if not steps and test is None:
        raise MissingInput(f"{run_dir}: C has no validation score and the run no test score "
                           "(run train-controller with eval_every > 0, or evaluate)")
    return EfficiencyPoints(run_dir.name, steps, scores, total, test)


def sample_efficiency_figure(run_dirs: Sequence[Path]) -> np.ndarray:
    """Validation (lines) and test (marker with its std) scores against real env steps, one
    colour per run (RGB uint8)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PANEL_INCHES[0] * 1.3, PANEL_INCHES[1] * 1.2), dpi=DPI,
                 layout="constrained")
    ax = fig.subplots()
    for i, run_dir in enumerate(run_dirs):
        p = efficiency_points(Path(run_dir))
        color = f"C{i % 10}"
        label = p.label + ("" if p.test is None else f" (test {p.test[0]:.0f} ± {p.test[1]:.0f})")
        if p.steps:
            ax.plot(np.array(p.steps) / 1e3, p.scores, "o-", color=color, linewidth=1.5,
                    markersize=4, alpha=0.8, label=label)
        if p.test is not None and p.test_steps is not None:
            ax.errorbar([p.test_steps / 1e3], [p.test[0]], yerr=[p.test[1]], fmt="*",
                        color=color, markersize=14, capsize=5,
                        label=None if p.steps else label)
    ax.set(title="Score against real env steps used: validation (o), test (*, ± std)",
           xlabel="real env steps (thousands): collection, real-env fitness, validation",
           ylabel="return")
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="best", fontsize="small")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    clear_legend(legend, canvas.get_renderer())
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
