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
                       where the stage commands run on their own write them).

A missing input is an error naming the file; with --skip-missing the figure (or learning-curve
panel) is skipped with a printed note instead. Every PNG is written atomically.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from ..cli import CLIError, add_device_argument
from ..utils import atomic_write_bytes, read_json, resolve_device
from ..video import diff_image, draw_text, hstack_panels, upscale

FIGURES = ("reconstruction", "dream_strip", "learning_curves")
PANEL = 128          # default side of a frame in the image grids (64 x 64 frames, upscaled)
GRID_BG = (24, 24, 24)
LABEL_WIDTH = 190    # the column of row labels in the image grids
CURVE_STAGES = ("vae", "rnn", "controller")  # the panels of learning_curves.png, tb/<stage>
TITLE_SCALE, TITLE_LINE = 0.6, 22  # font scale of grid titles; pixels per line of them
GAP = 4              # pixels between the rows of an image grid


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
    parser.add_argument("--size", type=int, default=PANEL,
                        help=f"side in pixels of each frame in the image grids, 64 x 64 frames "
                             f"upscaled with nearest pixels (default: {PANEL})")
    parser.add_argument("--frames", type=int, default=8,
                        help="frames (columns) in reconstruction.png (default: 8)")
    parser.add_argument("--steps", type=int, default=100,
                        help="dream steps in dream_strip.png (default: 100)")
    parser.add_argument("--every", type=int, default=10,
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
    }
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
    return require(run_dir / "vae" / "vae.pt", "V: run train-vae first")


def rnn_path(run_dir: Path) -> Path:
    return require(run_dir / "rnn" / "mdnrnn.pt", "M: run train-rnn first")


def controller_path(run_dir: Path) -> Path:
    """controller_best.pt (the best real evaluation), else controller.pt (the CMA mean)."""
    folder = run_dir / "controller"
    best = folder / "controller_best.pt"
    if best.is_file():
        return best
    return require(folder / "controller.pt",
                   f"C: run train-controller first; nor is there {best}")


def rollout_entries(run_dir: Path) -> tuple[Path, list[dict]]:
    from ..data import MANIFEST, read_manifest

    folder = run_dir / "rollouts"
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
        found, missing = 0, None
        for stage in CURVE_STAGES:
            try:
                scalars_csv(run_dir, stage)
                found += 1
            except MissingInput as e:
                missing = missing or e
        if missing is not None and (not skip_missing or not found):
            raise missing
    else:
        raise ValueError(f"unknown figure {name!r}; choose from {FIGURES}")


def note_unfinished(folder: Path) -> None:
    from ..runs import is_done

    if not is_done(folder):
        print(f"figures: note: {folder} has no done.json (its stage has not finished); "
              "using its latest checkpoint")


def scalars_csv(run_dir: Path, stage: str) -> Path:
    """RUN/tb/<stage>/scalars.csv (the pipeline's), else RUN/<stage>/tb/scalars.csv."""
    main, alone = run_dir / "tb" / stage / "scalars.csv", run_dir / stage / "tb" / "scalars.csv"
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
    """One dream from latent ``z0`` (1 x Z), C acting on [z, h] each step.

    Returns the latents z_0..z_steps (steps + 1 x Z), the return so far and whether M had
    ended the dream, at each of them (a dream that ended stays frozen).
    """
    z, h = dream.reset(1, seed, z=z0)
    zs, returns, dones, ret = [z[0]], [0.0], [False], 0.0
    with torch.inference_mode():
        for _ in range(steps):
            action = controller(z, h)
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
    from ..dream import BatchedDream, predict_open_loop
    from ..vae import decode_frames as decode
    from ..vae import frames_to_tensor, load_vae

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
    dream = BatchedDream.from_checkpoint(
        m_path, device=device, vae_path=v_path, temperature=tau, max_steps=10**9,
        done_threshold=float(c_cfg.get("done_threshold", 0.5)))
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
                                                done_threshold=1.0)
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
# learning_curves.png: line plots drawn with OpenCV (matplotlib is not a dependency)


@dataclass
class Series:
    label: str | None
    x: np.ndarray
    y: np.ndarray
    color: tuple[int, int, int]
    style: str = "line"      # line | markers (with a line through them) | hline (dashed, at y[0])
    thickness: int = 2
    yerr: np.ndarray | None = None


@dataclass
class Band:
    """A filled area between two curves on the same x."""

    x: np.ndarray
    low: np.ndarray
    high: np.ndarray
    color: tuple[int, int, int]
    label: str | None = None


BLUE, ORANGE, GREEN = (31, 119, 180), (255, 127, 14), (44, 160, 44)
INK, GRID_INK, WHITE = (40, 40, 40), (225, 225, 225), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_LINE = 18  # pixels per legend entry


def tint(color: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """``color`` mixed with white (amount 1: white)."""
    return tuple(int(round(c + (255 - c) * amount)) for c in color)  # type: ignore[return-value]


def smooth(y: np.ndarray) -> np.ndarray:
    """Centred moving average over about len / 30 points, narrowing symmetrically towards
    the ends (the first and last points are kept): no lag, no bias at the ends of a trend."""
    n = len(y)
    c = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
    i = np.arange(n)
    k = np.minimum(np.minimum(i, n - 1 - i), n // 60)
    lo, hi = i - k, i + k + 1
    return (c[hi] - c[lo]) / (hi - lo)


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About ``n`` round ticks (1, 2, 5 x 10^k steps) within [lo, hi]; ``integer``: steps >= 1."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log axis over [lo, hi] (> 0): 1, 2, 5 x 10^k, thinned to about 6."""
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]
    if len(ticks) > 7:
        ticks = [t for t in ticks if abs(math.log10(t) - round(math.log10(t))) < 1e-9] or ticks
    return ticks


def fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:.4g}"


def put(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.45,
        color: tuple[int, int, int] = INK, align: str = "left", valign: str = "baseline") -> None:
    """Text at (x, y): ``align`` left|center|right, ``valign`` baseline|center|top."""
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    x -= {"left": 0, "center": w // 2, "right": w}[align]
    y += {"baseline": 0, "center": h // 2, "top": h}[valign]
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)


def line_plot(title: str, xlabel: str, ylabel: str, series: Sequence[Series],
              bands: Sequence[Band] = (), size: tuple[int, int] = (640, 420),
              log_y: bool | None = None, headroom: float = 0.0) -> np.ndarray:
    """A line plot (RGB uint8) with axes, grid, tick labels, a title and a legend.

    ``log_y`` None: a log y axis when every value is positive and they span over 30x.
    The legend goes in the corner of the plot where it hides the least; when it would hide
    some data wherever it goes, the plot is drawn again with ``headroom`` (a fraction of its
    height) left free above the data for it.
    """
    width, height = size
    img = np.full((height, width, 3), WHITE, np.uint8)
    left, right, top, bottom = 70, 16, 34, 52
    pw, ph = width - left - right, height - top - bottom
    put(img, title, width // 2, 20, 0.55, align="center")
    put(img, xlabel, left + pw // 2, height - 10, align="center")
    ylab = np.full((22, ph, 3), WHITE, np.uint8)
    put(ylab, ylabel, ph // 2, 16, align="center")
    img[top:top + ph, 2:24] = np.rot90(ylab)

    xs = [s.x for s in series if s.style != "hline"] + [b.x for b in bands]
    ys = ([s.y if s.yerr is None else np.concatenate([s.y - s.yerr, s.y + s.yerr]) for s in series]
          + [b.low for b in bands] + [b.high for b in bands])
    xs_all = np.concatenate([x for x in xs if len(x)]) if any(len(x) for x in xs) else np.zeros(1)
    ys_all = np.concatenate([y for y in ys if len(y)]) if any(len(y) for y in ys) else np.zeros(1)
    ys_all = ys_all[np.isfinite(ys_all)] if np.isfinite(ys_all).any() else np.zeros(1)
    hline_only = all(s.style == "hline" for s in series)
    x0, x1 = (0.0, 1.0) if hline_only else (float(xs_all.min()), float(xs_all.max()))
    integer_x = bool(np.all(xs_all == np.round(xs_all)))
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if any(s.style == "markers" for s in series):  # room for the end markers
        x0, x1 = x0 - 0.02 * (x1 - x0), x1 + 0.02 * (x1 - x0)
    y0, y1 = float(ys_all.min()), float(ys_all.max())
    if log_y is None:
        log_y = y0 > 0 and y1 / y0 > 30
    if log_y:
        ty = math.log10
        y0, y1 = y0 / 1.15, y1 * 1.15
        y1 = y1 * (y1 / y0) ** (headroom / (1 - headroom))
        yticks = log_ticks(y0, y1)
    else:
        ty = float
        pad = (y1 - y0) * 0.06 if y1 > y0 else max(abs(y0) * 0.1, 1.0)
        y0, y1 = y0 - pad, y1 + pad
        y1 += (y1 - y0) * headroom / (1 - headroom)
        yticks = nice_ticks(y0, y1)

    def px(x: np.ndarray) -> np.ndarray:
        return left + (np.asarray(x, np.float64) - x0) / (x1 - x0) * pw

    def py(y: np.ndarray) -> np.ndarray:
        t = np.log10(np.maximum(y, 1e-300)) if log_y else np.asarray(y, np.float64)
        return top + ph - (t - ty(y0)) / (ty(y1) - ty(y0)) * ph

    for t in yticks:
        y = int(round(float(py(np.array([t]))[0])))
        cv2.line(img, (left, y), (left + pw, y), GRID_INK, 1)
        cv2.line(img, (left - 4, y), (left, y), INK, 1)
        put(img, fmt(t), left - 7, y, 0.4, align="right", valign="center")
    for t in nice_ticks(x0, x1, 6, integer=integer_x) if not hline_only else []:
        x = int(round(float(px(np.array([t]))[0])))
        cv2.line(img, (x, top), (x, top + ph), GRID_INK, 1)
        cv2.line(img, (x, top + ph), (x, top + ph + 4), INK, 1)
        put(img, fmt(t), x, top + ph + 8, 0.4, align="center", valign="top")

    plot = img[top:top + ph + 1, left:left + pw + 1]  # a view: drawing clips to the plot area
    def pts(x, y) -> np.ndarray:
        return np.stack([px(x) - left, py(y) - top], axis=1).round().astype(np.int32)

    for b in bands:
        if len(b.x) >= 2:
            poly = np.concatenate([pts(b.x, b.high), pts(b.x, b.low)[::-1]])
            cv2.fillPoly(plot, [poly], tint(b.color, 0.8), cv2.LINE_AA)
    for s in series:
        if s.style == "hline":
            y = int(pts([x0], s.y[:1])[0, 1])
            for a in range(0, pw, 14):
                cv2.line(plot, (a, y), (min(a + 8, pw), y), s.color, s.thickness, cv2.LINE_AA)
            continue
        keep = np.isfinite(s.y)
        p = pts(s.x[keep], s.y[keep])
        if len(p) >= 2:
            cv2.polylines(plot, [p], False, s.color, s.thickness, cv2.LINE_AA)
        if s.style == "markers" or len(p) == 1:
            if s.yerr is not None:
                lo = pts(s.x[keep], (s.y - s.yerr)[keep])
                hi = pts(s.x[keep], (s.y + s.yerr)[keep])
                for (xa, ya), (_, yb) in zip(lo, hi):
                    cv2.line(plot, (xa, ya), (xa, yb), s.color, 1, cv2.LINE_AA)
                    cv2.line(plot, (xa - 4, ya), (xa + 4, ya), s.color, 1, cv2.LINE_AA)
                    cv2.line(plot, (xa - 4, yb), (xa + 4, yb), s.color, 1, cv2.LINE_AA)
            for q in p:
                cv2.circle(plot, (int(q[0]), int(q[1])), 4, s.color, cv2.FILLED, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), INK, 1)

    entries = [(s.label, s.color, s.style) for s in series if s.label] + \
              [(b.label, tint(b.color, 0.8), "band") for b in bands if b.label]
    if entries:
        drawn = [pts(s.x, s.y) for s in series if len(s.x) and s.style != "hline"]
        for s in series:
            if s.style == "hline":
                y = int(pts([x0], s.y[:1])[0, 1])
                drawn.append(np.array([[0, y], [pw, y]]))
        drawn += [pts(b.x, b.high) for b in bands] + [pts(b.x, b.low) for b in bands]
        hidden = _legend(img, entries, (left, top, pw, ph), _along(drawn) + [left, top])
        if hidden and headroom == 0:
            return line_plot(title, xlabel, ylabel, series, bands, size, log_y,
                             headroom=min(0.5, (LEGEND_LINE * len(entries) + 22) / ph))
    return img


def _along(polylines: list[np.ndarray], spacing: float = 4.0) -> np.ndarray:
    """Points every ``spacing`` pixels along each polyline (for the legend's placement)."""
    out = [np.zeros((0, 2))]
    for p in polylines:
        p = p.astype(np.float64)
        out.append(p)
        for a, b in zip(p[:-1], p[1:]):
            n = int(np.hypot(*(b - a)) / spacing)
            if n > 1:
                out.append(a + (b - a) * np.linspace(0, 1, n)[:, None])
    return np.concatenate(out)


def _legend(img: np.ndarray, entries: list[tuple[str, tuple, str]],
            area: tuple[int, int, int, int], points: np.ndarray) -> int:
    """The legend, in the corner of the plot area that covers the fewest data points;
    returns how many it covers there."""
    left, top, pw, ph = area
    scale, line_h = 0.42, LEGEND_LINE
    w = max(cv2.getTextSize(label, FONT, scale, 1)[0][0] for label, _, _ in entries) + 44
    h = line_h * len(entries) + 8
    corners = [(left + pw - w - 6, top + 6), (left + pw - w - 6, top + ph - h - 6),
               (left + 6, top + 6), (left + 6, top + ph - h - 6)]

    def covered(c: tuple[int, int]) -> int:
        x, y = c
        return int(((points[:, 0] >= x) & (points[:, 0] <= x + w)
                    & (points[:, 1] >= y) & (points[:, 1] <= y + h)).sum())
    x, y = min(corners, key=covered)
    hidden = covered((x, y))
    cv2.rectangle(img, (x, y), (x + w, y + h), WHITE, cv2.FILLED)
    cv2.rectangle(img, (x, y), (x + w, y + h), (180, 180, 180), 1)
    for i, (label, color, style) in enumerate(entries):
        cy = y + 4 + line_h * i + line_h // 2
        if style == "band":
            cv2.rectangle(img, (x + 8, cy - 5), (x + 34, cy + 5), color, cv2.FILLED)
        elif style == "hline":
            for a in (8, 22):
                cv2.line(img, (x + a, cy), (x + a + 8, cy), color, 2, cv2.LINE_AA)
        else:
            cv2.line(img, (x + 8, cy), (x + 34, cy), color, 2, cv2.LINE_AA)
            if style == "markers":
                cv2.circle(img, (x + 21, cy), 4, color, cv2.FILLED, cv2.LINE_AA)
        put(img, label, x + 40, cy, scale, valign="center")
    return hidden


def loss_series(scalars: dict[str, tuple[np.ndarray, np.ndarray]], prefix: str,
                path: Path) -> list[Series]:
    """Train loss (faint raw values and their moving average) and the val loss."""
    train, val = scalars.get(f"{prefix}/loss"), scalars.get(f"{prefix}/val_loss")
    if train is None and val is None:
        raise ValueError(f"{path} has neither {prefix}/loss nor {prefix}/val_loss")
    out = []
    if train is not None:
        x, y = train
        if len(y) > 30:
            out.append(Series(None, x, y, tint(BLUE, 0.65), thickness=1))
            out.append(Series("train (moving average)", x, smooth(y), BLUE))
        else:
            out.append(Series("train", x, y, BLUE, style="markers" if len(y) < 10 else "line"))
    if val is not None:
        out.append(Series("validation", *val, ORANGE, style="markers"))
    return out


def es_plot(scalars: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
            results: dict | None) -> np.ndarray:
    need = ("es/fitness_best", "es/fitness_mean", "es/fitness_worst")
    missing = [t for t in need if t not in scalars]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}")
    x = scalars["es/fitness_mean"][0]
    best, mean, worst = (scalars[t][1] for t in need)
    n = min(len(best), len(mean), len(worst))
    style = "markers" if n < 10 else "line"
    series = [Series("ES best", x[:n], best[:n], BLUE, style=style),
              Series("ES mean", x[:n], mean[:n], tint(BLUE, 0.3), style=style, thickness=1),
              Series("ES worst", x[:n], worst[:n], tint(BLUE, 0.55), style=style, thickness=1)]
    if "eval/real_return_mean" in scalars:
        ex, ey = scalars["eval/real_return_mean"]
        std = scalars.get("eval/real_return_std")
        yerr = std[1] if std is not None and len(std[1]) == len(ey) else None
        series.append(Series("real env (CMA mean)", ex, ey, ORANGE, style="markers", yerr=yerr))
    if results and "summary" in results:
        s = results["summary"]
        series.append(Series(f"test: {s['mean']:.0f} +/- {s['std']:.0f} ({s['episodes']} episodes)",
                             np.zeros(1), np.array([float(s["mean"])]), GREEN, style="hline"))
    # Only dream-mode training logs dream/return_mean; real-mode fitness is real returns.
    where = "dream" if "dream/return_mean" in scalars else "real-env"
    return line_plot(f"C: CMA-ES fitness = mean {where} return", "generation", "return", series,
                     bands=[Band(x[:n], worst[:n], best[:n], BLUE)], log_y=False)


def learning_curves_figure(run_dir: Path, skip_missing: bool = False) -> np.ndarray:
    """V's, M's and C's curves side by side; a panel whose scalars.csv is missing is an error
    (MissingInput), or left out with ``skip_missing``."""
    panels = []
    makers = (
        ("vae", lambda s, p: line_plot("V: ConvVAE loss (recon + KL)", "step", "loss",
                                       loss_series(s, "vae", p))),
        ("rnn", lambda s, p: line_plot("M: MDN-RNN loss (GMM NLL + reward + done)", "step",
                                       "loss", loss_series(s, "mdnrnn", p))),
        ("controller", lambda s, p: es_plot(s, p, _results(run_dir))),
    )
    for stage, make in makers:
        try:
            path = scalars_csv(run_dir, stage)
        except MissingInput as e:
            if not skip_missing:
                raise
            print(f"figures: learning_curves: leaving out the {stage} panel: {e}")
            continue
        panels.append(make(read_scalars(path), path))
    if not panels:
        raise MissingInput(f"no scalars.csv under {run_dir / 'tb'}: no stage has logged yet")
    gap = np.full((panels[0].shape[0], 12, 3), WHITE, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


def _results(run_dir: Path) -> dict | None:
    path = run_dir / "eval" / "results.json"
    return read_json(path) if path.is_file() else None
