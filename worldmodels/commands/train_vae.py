"""Train V, the convolutional VAE, on the frames of collected rollouts.

Frames stream from the shards and stay uint8 until they reach the device: each epoch
shuffles the episode order, loads a window of episodes (about 20,000 frames, ~245 MB; a
background thread loads the next window while the current one trains), shuffles the frames
of the window and cuts them into batches. Memory holds a few windows, whatever the size of
the data set (the paper's 10M frames are 123 GB as uint8).

The order of an epoch is a pure function of (seed, epoch, episode lengths), and training
progress is a position in that order, so a resumed run, from the end-of-epoch checkpoint or
from a periodic one inside an epoch, sees exactly the batches and the reparameterisation
noise of an uninterrupted run and ends with the same weights.

The last ``val_episodes`` episodes of the manifest are held out for the validation loss.
TensorBoard: ``vae/loss``, ``vae/recon``, ``vae/kl``, ``time/img_per_s`` during training;
``vae/val_loss``, ``vae/val_recon``, ``vae/val_kl`` and two images each epoch:
``vae/reconstructions`` (held-out frames over their reconstructions) and ``vae/prior_samples``
(decoded z ~ N(0, I), the same z every epoch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_state, save_checkpoint
from ..cli import (
    add_config_arguments,
    add_device_argument,
    add_preset_argument,
    config_from_args,
)
from ..config import VAEConfig
from ..data import ShardError, batches_across, episode_files, read_episode, read_manifest
from ..logger import Logger
from ..runs import TB, VAE_CHECKPOINT, is_done, mark_done, print_already_finished, read_done, start_run
from ..utils import Prefetch, check_finite, resolve_device, seed_everything
from ..vae import ConvVAE, frames_to_tensor, reconstruction_grid, tensor_to_frames, vae_loss

WINDOW_FRAMES = 20_000
"""Frames per shuffling window (~245 MB as uint8); at most ~4 windows are in memory at once."""
CHECKPOINT_EVERY_S = 300.0
"""A checkpoint is also written inside an epoch when this many seconds passed since the last."""
LOG_EVERY = 10
"""Training scalars are averaged over this many steps."""
N_IMAGES = 8
"""Frames in the reconstruction grid; twice as many prior samples."""


# ---------------------------------------------------------------------------------------------
# Reading episodes


def split_episodes(data_dir: Path, val_episodes: int,
                   skip_corrupt: bool = False) -> tuple[list[dict], list[dict]]:
    """Manifest entries of the training and the held-out episodes (the last ``val_episodes``)."""
    present = {p.name for p in episode_files(data_dir, "rollout", skip_corrupt=skip_corrupt)}
    entries = [e for e in read_manifest(data_dir) if e["file"] in present]
    if val_episodes < 0 or len(entries) <= val_episodes:
        raise ValueError(f"{data_dir} has {len(entries)} episodes; training needs more than "
                         f"val_episodes={val_episodes} (lower --vae.val-episodes or collect more)")
    cut = len(entries) - val_episodes
    return entries[:cut], entries[cut:]


# ---------------------------------------------------------------------------------------------
# The streamed, seeded data order


class EpochPlan:
    """The frames one epoch visits, in order, as a function of (lengths, seed, epoch) only.

    Episodes are shuffled and grouped into windows of at least ``window_frames`` frames; the
    frames of window ``w`` are permuted with a generator seeded by (seed, epoch, w). A
    position is an index into the concatenation of the windows' permuted frames; with
    ``max_frames`` > 0 the epoch ends after that many positions (frames of randomly chosen
    episodes, different ones each epoch).
    """

    def __init__(self, lengths: list[int], seed: int, epoch: int, window_frames: int,
                 max_frames: int = 0):
        self.seed, self.epoch = seed, epoch
        lengths_arr = np.asarray(lengths, dtype=np.int64)
        order = np.random.default_rng([seed, epoch]).permutation(len(lengths_arr))
        self.windows: list[np.ndarray] = []
        current: list[int] = []
        size = 0
        for i in order:
            current.append(int(i))
            size += int(lengths_arr[i])
            if size >= window_frames:
                self.windows.append(np.array(current))
                current, size = [], 0
        if current:
            self.windows.append(np.array(current))
        sizes = [int(lengths_arr[w].sum()) for w in self.windows]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        full = int(self.starts[-1])
        self.total = min(full, max_frames) if max_frames > 0 else full

    def window_order(self, w: int) -> np.ndarray:
        """Permutation of window ``w``'s frames (indices into its episodes, concatenated)."""
        size = int(self.starts[w + 1] - self.starts[w])
        return np.random.default_rng([self.seed, self.epoch, w]).permutation(size)


def load_windows(data_dir: Path, episodes: list[dict], plan: EpochPlan, start: int,
                 skip_corrupt: bool = False) -> Prefetch[tuple[np.ndarray, np.ndarray, list[str]]]:
    """The windows of an epoch from position ``start`` on, loaded in a background thread
    (close it when done); the next window is ready when the current one is used up.

    Yields ``(frames, positions, warnings)``: the window's frames in plan order (uint8,
    N x 64 x 64 x 3) and their plan positions, those before ``start``, past the epoch's end or
    in corrupt episodes (with ``skip_corrupt``) left out.
    """
    stop = threading.Event()
    windows = (_load_window(data_dir, episodes, plan, w, start, skip_corrupt, stop)
               for w in range(len(plan.windows))
               if plan.starts[w + 1] > start and plan.starts[w] < plan.total)
    return Prefetch(windows, ahead=1, name="vae-window-loader", stop=stop)


def _load_window(data_dir: Path, episodes: list[dict], plan: EpochPlan, w: int, start: int,
                 skip_corrupt: bool, stop: threading.Event
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    eps = [episodes[i] for i in plan.windows[w]]
    lengths = [int(e["length"]) for e in eps]
    data = np.empty((sum(lengths), 64, 64, 3), dtype=np.uint8)
    valid = np.ones(len(data), dtype=bool)
    notes = []
    offset = 0
    for entry, n in zip(eps, lengths):
        if stop.is_set():  # the consumer is gone: this window will not be used
            break
        try:
            data[offset:offset + n] = read_episode(data_dir, entry, keys=["obs"])["obs"]
        except ShardError as e:
            if not skip_corrupt:
                raise
            notes.append(f"skipping: {e}")
            valid[offset:offset + n] = False
        offset += n
    order = plan.window_order(w)
    positions = plan.starts[w] + np.arange(len(order))
    keep = (positions >= start) & (positions < plan.total) & valid[order]
    return data[order[keep]], positions[keep], notes


def iter_batches(windows: Iterable[tuple[np.ndarray, np.ndarray, list[str]]],
                 batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Cut the loaded windows into uint8 batches; yields (batch, position after the batch).

    Batches run across window boundaries; the last one of an epoch may be smaller.
    """
    def warned(windows):
        for window in windows:
            for note in window[2]:
                warnings.warn(note, stacklevel=4)
            yield window

    for batch, pieces in batches_across(warned(windows), batch_size, lambda w: w[0]):
        (_, positions, _), _, end = pieces[-1]
        yield batch, int(positions[end - 1]) + 1


# ---------------------------------------------------------------------------------------------
# Evaluation and images


@torch.inference_mode()
def validate(vae: ConvVAE, data_dir: Path, episodes: list[dict], cfg: VAEConfig,
             device: torch.device, epoch: int, skip_corrupt: bool = False) -> dict[str, float]:
    """Mean loss, reconstruction and KL over every frame of ``episodes`` (streamed by episode).

    The noise is seeded by (seed, epoch), so the value does not depend on where training
    stopped or resumed, and training's own noise is untouched.
    """
    vae.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, 1]).generate_state(1)[0]))
    sums = np.zeros(3)
    frames = 0
    for entry in episodes:
        try:
            obs = read_episode(data_dir, entry, keys=["obs"])["obs"]
        except ShardError as e:
            if not skip_corrupt:
                raise
            warnings.warn(f"skipping: {e}", stacklevel=2)
            continue
        for i in range(0, len(obs), cfg.batch_size):
            x = frames_to_tensor(torch.from_numpy(obs[i:i + cfg.batch_size]).to(device))
            losses = vae_loss(vae(x, generator=generator), x, cfg.kl_tolerance)
            sums += len(x) * np.array([losses.loss.item(), losses.recon.item(), losses.kl.item()])
            frames += len(x)
    vae.train()
    if frames == 0:
        return {}
    # Plain floats: they go into checkpoints, which load weights-only.
    loss, recon, kl = (float(v) for v in sums / frames)
    return {"vae/val_loss": loss, "vae/val_recon": recon, "vae/val_kl": kl}


def pick_image_frames(data_dir: Path, episodes: list[dict], n: int = N_IMAGES) -> np.ndarray:
    """``n`` frames evenly spread over the first readable episode (held-out if possible)."""
    for entry in episodes:
        try:
            obs = read_episode(data_dir, entry, keys=["obs"])["obs"]
        except ShardError:
            continue
        return obs[np.linspace(0, len(obs) - 1, n).round().astype(int)]
    raise ShardError(f"no readable episode in {data_dir} to draw image frames from")


@torch.inference_mode()
@torch.inference_mode()
def prior_samples(vae: ConvVAE, z: torch.Tensor, per_row: int = N_IMAGES) -> np.ndarray:
    """Decoded z (e.g. drawn from N(0, I)) as a grid of ``per_row`` frames a row, HWC uint8."""
    vae.eval()
    frames = tensor_to_frames(vae.decode(z)).cpu().numpy()
    vae.train()
    rows = [np.concatenate(list(frames[i:i + per_row]), axis=1)
            for i in range(0, len(frames), per_row)]
    return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class Progress:
    """Where training stands; saved in the checkpoint's ``extra`` for resume."""

    epoch: int = 0
    """Completed epochs."""
    position: int = 0
    """Frames of the current epoch's plan already trained on."""
    step: int = 0
    frames: int = 0
    """Frames trained on, all epochs."""
    train_s: float = 0.0
    """Seconds spent in training steps (data waits included), for img/s."""
    wall_s: float = 0.0
    """Wall time of all sessions of this run."""
    train_loss: float = float("nan")
    """Mean training loss of the last completed epoch."""
    val: dict | None = None
    """Validation metrics of the last completed epoch."""


def data_identity(train: list[dict], val: list[dict]) -> str:
    """A hash of the episodes a run trains on; a resumed run must see the same ones."""
    key = [[e["file"], int(e["length"]), e["sha256"]] for e in train + val]
    return hashlib.sha256(json.dumps([key, len(val)]).encode()).hexdigest()


def train_vae(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: VAEConfig,
              device: str = "auto", tb_dir: str | os.PathLike | None = None,
              progress: bool = True, skip_corrupt: bool = False, *,
              window_frames: int = WINDOW_FRAMES,
              checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> Path:
    """Train V on the rollouts in ``data_dir``; returns ``out_dir/vae.pt``.

    Rerunning with the same arguments resumes from the last checkpoint; a finished run is
    not redone; ``out_dir`` started with another config is refused.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    ckpt_path = out_dir / VAE_CHECKPOINT
    if not data_dir.is_dir():  # before OUT is created: a mistyped path leaves nothing behind
        raise ShardError(f"data folder not found: {data_dir}")
    start_run(out_dir, asdict(cfg), stage="train-vae")
    if is_done(out_dir):
        print_already_finished("train-vae", out_dir, _describe(read_done(out_dir)))
        return ckpt_path
    dev = resolve_device(device)
    train_eps, val_eps = split_episodes(data_dir, cfg.val_episodes, skip_corrupt)
    data_id = data_identity(train_eps, val_eps)

    seed_everything(cfg.seed)
    vae = ConvVAE(cfg.z_dim).to(dev)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    noise = torch.Generator(device=dev)
    noise.manual_seed(cfg.seed)
    prior_z = torch.randn(2 * N_IMAGES, cfg.z_dim,
                          generator=torch.Generator().manual_seed(cfg.seed)).to(dev)
    state = Progress()
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, kind="vae", map_location=dev)
        extra = ckpt["extra"]
        if extra.get("data_id") != data_id:
            raise ValueError(f"the episodes in {data_dir} differ from those {ckpt_path} was "
                             "trained on; resume with the original data or use another --out")
        load_state(vae, ckpt["model"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        noise.set_state(extra["noise_rng"].cpu())
        state = Progress(**extra["progress"])
        print(f"train-vae: resuming {ckpt_path} at epoch {state.epoch + 1}/{cfg.epochs}, "
              f"frame {state.position} of the epoch (step {state.step})")

    image_frames = pick_image_frames(data_dir, val_eps + train_eps)
    lengths = [int(e["length"]) for e in train_eps]
    session_start = time.monotonic()
    wall_before = state.wall_s

    def save() -> None:
        state.wall_s = wall_before + time.monotonic() - session_start
        save_checkpoint(ckpt_path, kind="vae", config=asdict(cfg), model=vae.state_dict(),
                        model_args=vae.model_args,
                        optimizer=optimizer.state_dict(), step=state.step, epoch=state.epoch,
                        extra={"progress": asdict(state), "noise_rng": noise.get_state(),
                               "data_id": data_id})

    logger = Logger(tb_dir if tb_dir is not None else out_dir / TB)
    try:
        vae.train()
        for epoch in range(state.epoch, cfg.epochs):
            plan = EpochPlan(lengths, cfg.seed, epoch, window_frames, cfg.max_frames_per_epoch)
            epoch_loss = _train_epoch(vae, optimizer, noise, cfg, dev, data_dir, train_eps,
                                      plan, state, logger, save, progress, skip_corrupt,
                                      checkpoint_every_s, ckpt_path)
            state.val = validate(vae, data_dir, val_eps, cfg, dev, epoch, skip_corrupt) or None
            if state.val:
                logger.scalars(state.val, state.step)
            logger.image("vae/reconstructions", reconstruction_grid(vae, image_frames, dev),
                         state.step)
            logger.image("vae/prior_samples", prior_samples(vae, prior_z), state.step)
            state.epoch, state.position, state.train_loss = epoch + 1, 0, epoch_loss
            save()
            logger.flush()
            print(f"train-vae: epoch {epoch + 1}/{cfg.epochs}  loss {epoch_loss:.2f}"
                  + (f"  val_loss {state.val['vae/val_loss']:.2f}" if state.val else "")
                  + f"  {_img_per_s(state):.0f} img/s", flush=True)

        summary = {
            "final_val_loss": state.val["vae/val_loss"] if state.val else None,
            "final_val_recon": state.val["vae/val_recon"] if state.val else None,
            "final_val_kl": state.val["vae/val_kl"] if state.val else None,
            "final_train_loss": state.train_loss,
            "epochs": state.epoch,
            "steps": state.step,
            "frames": state.frames,
            "img_per_s": _img_per_s(state),
            "wall_time_s": wall_before + time.monotonic() - session_start,
            "train_episodes": len(train_eps),
            "val_episodes": len(val_eps),
            "device": str(dev),
            "checkpoint": str(ckpt_path),
        }
        logger.hparams(asdict(cfg), {f"hparam/{k}": float(v) for k, v in summary.items()
                                     if k.startswith("final_") and v is not None})
        mark_done(out_dir, summary)
        print(f"train-vae: done ({_describe(summary)}) -> {ckpt_path}")
    finally:
        logger.close()
    return ckpt_path


def _train_epoch(vae: ConvVAE, optimizer: torch.optim.Optimizer, noise: torch.Generator,
                 cfg: VAEConfig, dev: torch.device, data_dir: Path, train_eps: list[dict],
                 plan: EpochPlan, state: Progress, logger: Logger, save, progress: bool,
                 skip_corrupt: bool, checkpoint_every_s: float, checkpoint: Path) -> float:
    """One epoch from ``state.position`` on; returns its mean loss (of this session's steps)."""
    bar = tqdm(total=plan.total, initial=state.position, unit="img", disable=not progress,
               desc=f"train-vae epoch {plan.epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
    loader = load_windows(data_dir, train_eps, plan, state.position, skip_corrupt)
    window = np.zeros(4)  # loss, recon, kl (frame-weighted sums), frames since the last log
    epoch_sum, epoch_frames = 0.0, 0
    last_log = last_save = time.monotonic()
    steps_since_log = 0

    def log(now: float) -> None:
        nonlocal steps_since_log, last_log
        frames = window[3]
        logger.scalars({"vae/loss": window[0] / frames, "vae/recon": window[1] / frames,
                        "vae/kl": window[2] / frames,
                        "time/img_per_s": frames / max(now - last_log, 1e-9)}, state.step)
        window[:] = 0
        steps_since_log, last_log = 0, now

    try:
        tick = time.monotonic()
        for batch, position in iter_batches(loader, cfg.batch_size):
            x = frames_to_tensor(torch.from_numpy(batch).to(dev, non_blocking=True))
            losses = vae_loss(vae(x, generator=noise), x, cfg.kl_tolerance)
            loss = losses.loss.item()
            check_finite(loss, "VAE loss", state.step, checkpoint)
            optimizer.zero_grad(set_to_none=True)
            losses.loss.backward()
            optimizer.step()

            n = len(batch)
            state.step += 1
            state.frames += n
            state.position = position
            now = time.monotonic()
            state.train_s += now - tick
            tick = now
            window += np.array([n * loss, n * losses.recon.item(), n * losses.kl.item(), n])
            epoch_sum += n * loss
            epoch_frames += n
            steps_since_log += 1
            bar.update(n)
            bar.set_postfix(loss=f"{loss:.1f}", refresh=False)
            if steps_since_log == LOG_EVERY:
                log(now)
            if position < plan.total and now - last_save >= checkpoint_every_s:
                save()
                last_save = tick = time.monotonic()
        if steps_since_log:
            log(time.monotonic())
    finally:
        loader.close()
        bar.close()
    return float(epoch_sum / max(epoch_frames, 1))


def _img_per_s(state: Progress) -> float:
    return state.frames / state.train_s if state.train_s > 0 else 0.0


def _describe(summary: dict) -> str:
    val = summary.get("final_val_loss")
    return (f"{summary.get('epochs')} epochs, "
            + (f"val loss {val:.2f}, " if val is not None else "")
            + f"{summary.get('img_per_s', 0):.0f} img/s, {summary.get('wall_time_s', 0):.0f} s")


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="rollout folder written by `worldmodels collect`")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: vae.pt, config.json, done.json (rerun to resume)")
    parser.add_argument("--tb-dir", type=Path, default=None,
                        help="TensorBoard folder (default: OUT/tb)")
    add_device_argument(parser)
    add_preset_argument(parser)
    add_config_arguments(parser, "vae")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip corrupt or missing shards with a warning instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from(args: argparse.Namespace) -> VAEConfig:
    """The resolved VAEConfig: the preset's, with the options given on the command line."""
    return config_from_args(args, "vae")


def run(args: argparse.Namespace) -> int:
    train_vae(args.data, args.out, config_from(args), device=args.device, tb_dir=args.tb_dir,
              progress=not args.no_progress, skip_corrupt=args.skip_corrupt)
    return 0
