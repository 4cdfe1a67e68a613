"""Train M, the MDN-RNN, on the latents written by ``worldmodels encode``.

Each training step feeds (z_t, a_t) and asks M for z_{t+1} (mixture NLL), reward_t (MSE)
and done_t = terminated[t] (weighted BCE; the time limit, ``truncated``, is not a terminal).
z is re-sampled from the stored mu/logvar of every frame in every batch.

Sequences. A latent episode of T frames holds T inputs (z_t, a_t) but only T-1 next-frame
targets: the frame after the last action was never stored. ``seq_len`` counts those z
transitions. An episode is cut into ``ceil((T-1) / seq_len)`` chunks (at least one) of
``seq_len`` transitions; the last chunk also carries the episode's final input, whose reward
and done targets (the terminal flag, the -100 of leaving the track) count while its missing
z_{t+1} is masked out of the NLL. A batch is therefore up to ``seq_len + 1`` steps wide, and
with the default ``seq_len=999`` a 1000-frame episode is exactly one sequence.

Masking. A sequence never spans two episodes: its gather indices are clamped to its own
episode's last step, and the LSTM starts from a zero state for every sequence. Steps past the
end of a short sequence are padding; the LSTM is causal, so they cannot change the outputs
of real steps, and ``mask`` / ``z_mask`` keep them (and the missing last z) out of the loss
and its gradients.

Resume. ``OUT_DIR/mdnrnn.pt`` is written after every epoch (model, Adam, step, the noise
generator's state); the data order of an epoch depends only on (seed, epoch), so rerunning
the same command continues exactly where the last finished epoch left off.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runs
from ..checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from ..cli import (
    add_config_arguments,
    add_device_argument,
    add_preset_argument,
    config_from_args,
)
from ..config import MDNRNNConfig
from ..data import episode_files, load_episodes, read_manifest
from ..logger import Logger
from ..mdnrnn import MDNRNN, load_mdnrnn, mdnrnn_loss
from ..utils import check_finite, read_json, resolve_device, seed_everything

STAGE = "train-rnn"
N_INITIAL = 1000
"""Dreams start from the first-frame encodings of up to this many training episodes."""
LOSS_TAGS = ("loss", "gmm_nll", "reward_mse", "done_bce")


class LatentData(NamedTuple):
    """Every episode concatenated along time (N steps in all), in memory."""

    mu: torch.Tensor          # N x Z, float16 or float32 as stored
    logvar: torch.Tensor      # N x Z
    action: torch.Tensor      # N x A float32
    reward: torch.Tensor      # N float32
    terminated: torch.Tensor  # N bool
    starts: np.ndarray        # E, index of each episode's first step
    lengths: np.ndarray       # E, steps of each episode


class Sequences(NamedTuple):
    """Training sequences (chunks of episodes), as indices into :class:`LatentData`."""

    start: torch.Tensor     # C, index of the first input
    n_inputs: torch.Tensor  # C, real input steps (the rest of a batch row is padding)
    n_z: torch.Tensor       # C, leading input steps that have a z_{t+1} target
    last: torch.Tensor      # C, index of the last step of the sequence's episode


class Batch(NamedTuple):
    z: torch.Tensor        # B x W x Z, input z_t
    action: torch.Tensor   # B x W x A
    z_next: torch.Tensor   # B x W x Z, target z_{t+1}
    reward: torch.Tensor   # B x W
    done: torch.Tensor     # B x W bool, terminated[t]
    mask: torch.Tensor     # B x W bool, real steps (reward and done count)
    z_mask: torch.Tensor   # B x W bool, real steps with a next frame (the NLL counts)
    start: torch.Tensor    # B, index of each sequence's first step (its identity)


def read_encode_record(latent_dir: str | os.PathLike, z_dim: int) -> dict:
    """The ``encode`` config of a latent folder: vae_path, vae_sha256, z_dim, dtype.

    Raises FileNotFoundError / ValueError when it is missing, incomplete, or its z_dim is not
    ``z_dim``.
    """
    path = Path(latent_dir) / runs.ENCODE_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data must be a folder written by "
                                "`worldmodels encode`")
    record = read_json(path)
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict) or record.get("stage") != "encode":
        raise ValueError(f"{path} is not an encode record (expected keys 'stage': 'encode' "
                         "and 'config')")
    missing = [k for k in ("vae_path", "vae_sha256", "z_dim") if k not in config]
    if missing:
        raise ValueError(f"{path} lacks {missing}; re-run `worldmodels encode`")
    if int(config["z_dim"]) != z_dim:
        raise ValueError(f"the latents in {latent_dir} have z_dim {config['z_dim']} "
                         f"(from {path}) but M is configured with z_dim {z_dim}; "
                         f"pass --rnn.z-dim {config['z_dim']}")
    return config


def load_latents(files: list[Path], progress: bool = False) -> LatentData:
    """Read latent shards and concatenate them along time."""
    keys = ("mu", "logvar", "action", "reward", "terminated")
    episodes = load_episodes(tqdm(files, desc="loading latents", unit="episode",
                                  disable=not progress), kind="latent", keys=keys)
    lengths = np.array([len(ep["reward"]) for ep in episodes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def cat(key: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([ep[key] for ep in episodes]))

    return LatentData(cat("mu"), cat("logvar"), cat("action"), cat("reward"),
                      cat("terminated"), starts, lengths)


def spread_rewards(reward: torch.Tensor, starts: np.ndarray, lengths: np.ndarray,
                   window: int) -> torch.Tensor:
    """Each step's reward spread evenly over the ``window`` steps around it (``rnn.reward_smooth``),
    the window cut at its episode's ends (then fewer steps share it): every episode keeps its
    sum, and no reward crosses into another episode. ``window`` <= 1: ``reward`` as it is."""
    if window <= 1:
        return reward
    r = reward.double().numpy()
    n = len(r)
    first = np.repeat(starts, lengths)           # each step's episode: its first step ...
    end = first + np.repeat(lengths, lengths)    # ... and one past its last
    start = np.arange(n) - (window - 1) // 2     # each step's window, before the cut
    lo, hi = np.maximum(first, start), np.minimum(end, start + window)
    share = r / (hi - lo)
    diff = np.zeros(n + 1)
    np.add.at(diff, lo, share)
    np.add.at(diff, hi, -share)
    return torch.from_numpy(np.cumsum(diff)[:n].astype(np.float32))


def make_sequences(starts: np.ndarray, lengths: np.ndarray, seq_len: int) -> Sequences:
    """Cut episodes into chunks of ``seq_len`` z transitions (see the module docstring)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    transitions = lengths - 1
    n_chunks = np.maximum(1, -(-transitions // seq_len))
    episode = np.repeat(np.arange(len(lengths)), n_chunks)
    chunk = np.arange(n_chunks.sum()) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    offset = chunk * seq_len
    n_z = np.minimum(seq_len, transitions[episode] - offset)
    n_inputs = n_z + (chunk == n_chunks[episode] - 1)
    return Sequences(*(torch.from_numpy(a) for a in (
        starts[episode] + offset, n_inputs, n_z, starts[episode] + lengths[episode] - 1)))


def subset(seqs: Sequences, index: torch.Tensor) -> Sequences:
    return Sequences(*(t[index] for t in seqs))


def make_batch(data: LatentData, seqs: Sequences, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> Batch:
    """Gather a batch of sequences and sample z = mu + exp(logvar / 2) * eps.

    Rows are as wide as the longest sequence; z of W + 1 steps is sampled once, so the
    target z_{t+1} is the very sample fed as the next input.
    """
    width = int(seqs.n_inputs.max())
    offsets = torch.arange(width + 1)
    # Clamped to the episode's last step: a row never reads another episode's data.
    pos = torch.minimum(seqs.start[:, None] + offsets, seqs.last[:, None])
    mu = data.mu[pos].to(device=device, dtype=torch.float32, non_blocking=True)
    logvar = data.logvar[pos].to(device=device, dtype=torch.float32, non_blocking=True)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    steps = pos[:, :-1]
    offsets = offsets[:-1]
    mask = offsets < seqs.n_inputs[:, None]
    z_mask = offsets < seqs.n_z[:, None]
    return Batch(z[:, :-1], data.action[steps].to(device), z[:, 1:],
                 data.reward[steps].to(device), data.terminated[steps].to(device),
                 mask.to(device), z_mask.to(device), seqs.start.to(device))


def bootstrap_weights(start: torch.Tensor, heads: int, seed: int) -> torch.Tensor:
    """B x K, 0 or 1: whether reward head k learns from the sequence starting at ``start``.
    A fixed half of the sequences per head, from (seed, sequence, head) alone, so epochs and
    resumed runs agree."""
    k = torch.arange(heads, device=start.device)
    h = (start.long().unsqueeze(1) * 2654435761 + k * 40503 + seed * 97) % 1000003
    return ((h * 69069 + 12345) % 1000003 % 2).to(torch.float32)


def batch_loss(model: MDNRNN, batch: Batch, cfg: MDNRNNConfig):
    out, _ = model(batch.z, batch.action)
    weights = (bootstrap_weights(batch.start, cfg.reward_heads, cfg.seed)
               if cfg.reward_heads > 1 else None)
    reward = batch.reward
    if cfg.reward_clip > 0:
        reward = reward.clamp(-cfg.reward_clip, cfg.reward_clip)
    return mdnrnn_loss(out, batch.z_next, reward, batch.done, mask=batch.mask,
                       z_mask=batch.z_mask, done_pos_weight=cfg.done_pos_weight,
                       reward_weight=cfg.reward_weight, done_weight=cfg.done_weight,
                       reward_weights=weights)


def build_model(cfg: MDNRNNConfig) -> MDNRNN:
    return MDNRNN(z_dim=cfg.z_dim, action_dim=cfg.action_dim, hidden_size=cfg.hidden_size,
                  n_gaussians=cfg.n_gaussians, predict_reward=cfg.predict_reward,
                  predict_done=cfg.predict_done, dropout=cfg.dropout,
                  reward_heads=cfg.reward_heads)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sequence order of an epoch; depends only on (seed, epoch)."""
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))


@torch.no_grad()
def evaluate(model: MDNRNN, data: LatentData, seqs: Sequences, cfg: MDNRNNConfig,
             device: torch.device) -> dict[str, float]:
    """Losses over every step of ``seqs`` (weighted by steps, not batches), with the same
    z noise at every call so that epochs are comparable."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    sums = dict.fromkeys(LOSS_TAGS[1:], 0.0)
    n_steps = int(seqs.n_inputs.sum())
    n_z = max(1, int(seqs.n_z.sum()))
    for i in range(0, len(seqs.start), cfg.batch_size):
        part = subset(seqs, torch.arange(i, min(i + cfg.batch_size, len(seqs.start))))
        losses = batch_loss(model, make_batch(data, part, device, generator), cfg)
        sums["gmm_nll"] += losses.gmm_nll.item() * int(part.n_z.sum())
        sums["reward_mse"] += losses.reward_mse.item() * int(part.n_inputs.sum())
        sums["done_bce"] += losses.done_bce.item() * int(part.n_inputs.sum())
    model.train()
    means = {"gmm_nll": sums["gmm_nll"] / n_z, "reward_mse": sums["reward_mse"] / n_steps,
             "done_bce": sums["done_bce"] / n_steps}
    means["loss"] = (means["gmm_nll"] + cfg.reward_weight * means["reward_mse"]
                     + cfg.done_weight * means["done_bce"])
    return {k: means[k] for k in LOSS_TAGS}


def train_rnn(latent_dir: str | os.PathLike | Sequence[str | os.PathLike],
              out_dir: str | os.PathLike, cfg: MDNRNNConfig,
              device: str = "auto", tb_dir: str | os.PathLike | None = None,
              progress: bool = True, init: str | os.PathLike | None = None) -> Path:
    """Train M on one latent folder, or several (the rounds of ``worldmodels iterate``);
    returns ``out_dir/mdnrnn.pt``.

    Resumes from ``out_dir/mdnrnn.pt`` if present; a finished run is returned as is. The
    run's config.json holds ``cfg``, the V's ``vae_sha256`` and, for several folders, their
    list, so a folder started on another config or on another V's latents is refused. Every
    folder must come from the same V. Validation: the last ``cfg.val_episodes`` episodes of
    the first folder's manifest (the same episodes however many rounds follow).

    ``init``: an M checkpoint of the same shape and V to start from (fine-tuning, e.g. the
    previous round's M in ``worldmodels iterate``) instead of fresh weights; the optimizer
    starts fresh. Its sha256 is part of the run's config.
    """
    dirs = [Path(latent_dir)] if isinstance(latent_dir, (str, os.PathLike)) else [
        Path(d) for d in latent_dir]
    if not dirs:
        raise ValueError("train_rnn needs at least one latent folder")
    out_dir = Path(out_dir)
    records = [read_encode_record(d, cfg.z_dim) for d in dirs]
    encoded = records[0]
    for d, rec in zip(dirs[1:], records[1:]):
        if rec["vae_sha256"] != encoded["vae_sha256"]:
            raise ValueError(f"{d} was encoded by another V than {dirs[0]} "
                             f"({rec['vae_sha256'][:12]} vs {encoded['vae_sha256'][:12]})")
    for d in dirs:  # every shard's own record of its V (manifests of 0.1.0 have none)
        other = [e["file"] for e in read_manifest(d)
                 if e.get("vae_sha256", encoded["vae_sha256"]) != encoded["vae_sha256"]]
        if other:
            raise ValueError(f"{d}: {len(other)} shards were encoded by another V than "
                             f"{encoded['vae_sha256'][:12]} (e.g. {other[0]}, per its manifest "
                             "entry); re-encode them")
    parents = {"vae_sha256": encoded["vae_sha256"]}
    run_config = {**asdict(cfg), **parents}
    if len(dirs) > 1:
        run_config["data"] = runs.input_folders(dirs, out_dir, "data")
    if init is not None:
        init = Path(init)
        if not init.is_file():
            raise FileNotFoundError(f"M to start from (init) not found: {init}")
        run_config["init_sha256"] = checkpoint_sha256(init)
    runs.start_run(out_dir, run_config, STAGE)
    ckpt_path = out_dir / runs.MDNRNN_CHECKPOINT
    if runs.is_done(out_dir):
        runs.print_already_finished(STAGE, out_dir, f"see {out_dir / runs.DONE}")
        return ckpt_path

    dev = resolve_device(device)
    per_dir = [episode_files(d, kind="latent", verify=True) for d in dirs]
    if cfg.val_episodes < 0 or cfg.val_episodes >= len(per_dir[0]):
        raise ValueError(f"{dirs[0]} has {len(per_dir[0])} episodes; val_episodes="
                         f"{cfg.val_episodes} leaves none for training")
    # Training episodes first (every folder, the first's without its validation tail), then
    # the validation episodes.
    n_val = cfg.val_episodes
    val_files = per_dir[0][len(per_dir[0]) - n_val:]
    files = per_dir[0][:len(per_dir[0]) - n_val] + [f for fs in per_dir[1:] for f in fs] + val_files
    data = load_latents(files, progress)
    if data.mu.shape[1] != cfg.z_dim or data.action.shape[1] != cfg.action_dim:
        raise ValueError(f"latents in {dirs[0]} have z {data.mu.shape[1]} and actions "
                         f"{data.action.shape[1]} wide, M expects {cfg.z_dim} and {cfg.action_dim}")
    if cfg.reward_smooth > 1:  # clipped first (batch_loss clips again: a no-op then)
        reward = data.reward.clamp(-cfg.reward_clip, cfg.reward_clip) if cfg.reward_clip > 0 \
            else data.reward
        data = data._replace(reward=spread_rewards(reward, data.starts, data.lengths,
                                                   cfg.reward_smooth))
    n_train = len(files) - n_val
    train_seqs = make_sequences(data.starts[:n_train], data.lengths[:n_train], cfg.seq_len)
    val_seqs = make_sequences(data.starts[n_train:], data.lengths[n_train:], cfg.seq_len)
    first = torch.from_numpy(data.starts[:min(n_train, N_INITIAL)])
    initial_mu, initial_logvar = data.mu[first].float(), data.logvar[first].float()

    seed_everything(cfg.seed)
    model = build_model(cfg).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    noise = torch.Generator(device=dev).manual_seed(cfg.seed)
    epoch, step, metrics = 0, 0, {}
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, kind="mdnrnn")
        if ckpt["parents"].get("vae_sha256") != parents["vae_sha256"]:
            raise CheckpointError(f"{ckpt_path} was trained on latents of another V")
        load_state(model, ckpt["model"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        noise.set_state(ckpt["extra"]["noise_rng"])
        epoch, step, metrics = ckpt["epoch"], ckpt["step"], ckpt["extra"]["metrics"]
        print(f"resuming {ckpt_path} after epoch {epoch} (step {step})")
    elif init is not None:
        start, record = load_mdnrnn(init)  # (older checkpoints: the shape from the config)
        if record["parents"].get("vae_sha256") != parents["vae_sha256"]:
            raise CheckpointError(f"{init} was trained on latents of another V than {dirs[0]}")
        if start.model_args != model.model_args:
            raise CheckpointError(f"{init} has shape {start.model_args}, this M needs "
                                  f"{model.model_args}")
        load_state(model, start.state_dict(), init)
        print(f"train-rnn: starting from {init}")

    steps_per_epoch = int(train_seqs.n_inputs.sum())
    logger = Logger(tb_dir if tb_dir is not None else out_dir / runs.TB)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=epoch * steps_per_epoch,
               unit="timestep", unit_scale=True, disable=not progress, desc="train-rnn")
    try:
        while epoch < cfg.epochs:
            order = epoch_order(len(train_seqs.start), cfg.seed, epoch)
            sums, n_batches, t0 = dict.fromkeys(LOSS_TAGS, 0.0), 0, time.perf_counter()
            for i in range(0, len(order), cfg.batch_size):
                part = subset(train_seqs, order[i:i + cfg.batch_size])
                losses = batch_loss(model, make_batch(data, part, dev, noise), cfg)
                optimizer.zero_grad(set_to_none=True)
                losses.loss.backward()
                values = dict(zip(LOSS_TAGS, torch.stack(list(losses)).tolist()))
                check_finite(values["loss"], "mdnrnn loss", step + 1, ckpt_path)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                n_batches += 1
                logger.scalars({f"mdnrnn/{k}": v for k, v in values.items()}, step)
                for k, v in values.items():
                    sums[k] += v
                bar.update(int(part.n_inputs.sum()))
                bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
            rate = steps_per_epoch / (time.perf_counter() - t0)
            epoch += 1
            val = evaluate(model, data, val_seqs, cfg, dev) if cfg.val_episodes else {}
            metrics = {"epoch": epoch, "step": step, "timesteps_per_s": rate,
                       **{k: v / n_batches for k, v in sums.items()},
                       **{f"val_{k}": v for k, v in val.items()}}
            logger.scalars({f"mdnrnn/val_{k}": v for k, v in val.items()}, step)
            logger.scalar("time/steps_per_s", rate, step)
            logger.flush()
            save_checkpoint(ckpt_path, kind="mdnrnn", config=asdict(cfg),
                            model=model.state_dict(), model_args=model.model_args,
                            optimizer=optimizer.state_dict(),
                            step=step, epoch=epoch, parents=parents,
                            extra={"vae_path": str(encoded["vae_path"]),
                                   "initial_mu": initial_mu, "initial_logvar": initial_logvar,
                                   "noise_rng": noise.get_state(), "metrics": metrics})
            bar.write(f"epoch {epoch}/{cfg.epochs}: " + "  ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("epoch", "step")))
        summary = {"stage": STAGE, "checkpoint": str(ckpt_path), "epochs": epoch,
                   "steps": step, "train_episodes": n_train,
                   "val_episodes": cfg.val_episodes, "vae_sha256": parents["vae_sha256"],
                   "metrics": metrics}
        logger.hparams(asdict(cfg), {f"hparam/{k}": v for k, v in metrics.items()
                                     if k in LOSS_TAGS or k.startswith("val_")})
        runs.mark_done(out_dir, summary)
    finally:
        bar.close()
        logger.close()
    return ckpt_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, nargs="+", metavar="LATENT_DIR",
                        help="folder(s) written by `worldmodels encode` with the same V (shards, "
                             "manifest.jsonl, encode.json); several: M learns from all, "
                             "validating on the first's last episodes")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT_DIR",
                        help="run folder: mdnrnn.pt, config.json, done.json")
    parser.add_argument("--tb-dir", type=Path, default=None,
                        help="TensorBoard folder (default: OUT_DIR/tb)")
    parser.add_argument("--init", type=Path, default=None, metavar="MDNRNN_PT",
                        help="fine-tune: start from this M (same shape, same V) instead of "
                             "fresh weights")
    add_device_argument(parser)
    add_preset_argument(parser)
    add_config_arguments(parser, "rnn")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "rnn")
    path = train_rnn(list(args.data), args.out, cfg, device=args.device, tb_dir=args.tb_dir,
                     progress=args.progress, init=args.init)
    print(path)
    return 0
