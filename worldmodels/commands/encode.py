"""Encode every rollout to per-frame mu and logvar with a trained V: the training data of M.

For each rollout shard ``ep_XXXXXX.npz`` a latent shard of the same name holds ``mu`` and
``logvar`` (T x Z, float16 or float32) and the rollout's action, reward, terminated and
truncated arrays unchanged; ``manifest.jsonl`` lists them (index, file, seed, length, return,
sha256 of the latent shard, rollout_sha256, and vae_sha256: the V that encoded it, so every
shard names its V even if folders are merged by hand). ``encode.json`` records ``{"stage": "encode",
"config": {vae_path, vae_sha256, z_dim, dtype}}``; encoding with another V (another sha256)
or dtype into the same folder is refused.
Rerunning skips the episodes already encoded, so it also picks up rollouts collected since.

Frames of consecutive episodes are concatenated to fill each batch, and a reader thread
checks and decompresses the next shards while V runs.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import checkpoint_sha256
from ..cli import add_device_argument, positive_int
from ..data import ShardError, append_manifest, batches_across, read_episode, read_manifest, write_shard
from ..runs import ENCODE_JSON, is_done, mark_done, print_already_finished, start_run
from ..utils import Prefetch, read_json, resolve_device
from ..vae import ConvVAE, frames_to_tensor, load_vae

DTYPES = ("float16", "float32")
COPIED = ("action", "reward", "terminated", "truncated")
READ_AHEAD = 4
"""Episodes the reader thread may hold ready (~12 MB each at 1000 frames)."""


class _Episode:
    """A rollout being encoded: its arrays and the latents filled in so far."""

    def __init__(self, entry: dict, arrays: dict[str, np.ndarray], z_dim: int, dtype: str):
        self.entry, self.arrays = entry, arrays
        self.length = len(arrays["obs"])
        self.mu = np.empty((self.length, z_dim), dtype=dtype)
        self.logvar = np.empty((self.length, z_dim), dtype=dtype)
        self.filled = 0


def _read(data_dir: Path, entries: list[dict], skip_corrupt: bool
          ) -> Iterator[tuple[dict, dict[str, np.ndarray] | ShardError]]:
    """``(entry, arrays)`` of each rollout, or ``(entry, ShardError)`` for one to skip."""
    for entry in entries:
        try:
            arrays: dict[str, np.ndarray] | ShardError = read_episode(data_dir, entry)
        except ShardError as e:
            if not skip_corrupt:
                raise
            arrays = e
        yield entry, arrays


def encode_rollouts(data_dir: str | os.PathLike, vae_path: str | os.PathLike,
                    out_dir: str | os.PathLike, dtype: str = "float16", batch_size: int = 1000,
                    device: str = "auto", progress: bool = True,
                    skip_corrupt: bool = False) -> Path:
    """Encode the rollouts of ``data_dir`` with the V of ``vae_path`` into ``out_dir``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    data_dir, vae_path, out_dir = Path(data_dir), Path(vae_path), Path(out_dir)
    # Inputs are checked before OUT is created, so a mistyped path leaves nothing behind.
    if not data_dir.is_dir():
        raise ShardError(f"data folder not found: {data_dir}")
    if out_dir.resolve() == data_dir.resolve():
        raise ValueError(f"--out {out_dir} is the rollouts folder itself; give the latents a "
                         "folder of their own")
    entries = read_manifest(data_dir)
    if not entries:
        raise ShardError(f"{data_dir} has no finished episodes "
                         "(manifest.jsonl is missing or empty)")
    dev = resolve_device(device)
    vae, _ = load_vae(vae_path, dev)
    record = {"vae_path": str(vae_path.resolve()), "vae_sha256": checkpoint_sha256(vae_path),
              "z_dim": vae.z_dim, "dtype": dtype}
    # V is identified by its hash: the same V found at another path keeps the recorded path.
    if (out_dir / ENCODE_JSON).is_file():
        old = read_json(out_dir / ENCODE_JSON).get("config", {})
        if old.get("vae_sha256") == record["vae_sha256"] and "vae_path" in old:
            record["vae_path"] = old["vae_path"]
    start_run(out_dir, record, stage="encode", filename=ENCODE_JSON)

    encoded = {e["index"] for e in read_manifest(out_dir) if (out_dir / e["file"]).is_file()}
    todo = [e for e in entries if e["index"] not in encoded]
    if not todo and is_done(out_dir):
        # Finished before: keep done.json's figures of the run that did the work.
        print_already_finished("encode", out_dir, f"all {len(entries)} episodes of {data_dir} encoded")
        return out_dir
    if todo:
        print(f"encode: {len(todo)} of {len(entries)} episodes to encode"
              + (f" ({len(encoded)} already done)" if encoded else ""))

    start = time.monotonic()
    frames, skipped = _encode(vae, dev, data_dir, out_dir, todo, dtype, batch_size, progress,
                              skip_corrupt, str(record["vae_sha256"]))
    wall = time.monotonic() - start
    rate = frames / wall if wall > 0 else 0.0
    latents = read_manifest(out_dir)
    mark_done(out_dir, {
        "episodes": len(latents),
        "frames": sum(int(e["length"]) for e in latents),
        "encoded_now": len(todo) - len(skipped),
        "frames_now": frames,
        "img_per_s": rate,
        "wall_time_s": wall,
        "skipped": skipped,
        **record,
    })
    if todo:
        print(f"encode: {frames} frames in {wall:.1f} s ({rate:.0f} img/s) -> {out_dir}"
              + (f"; skipped {len(skipped)} corrupt shards" if skipped else ""))
    return out_dir


@torch.inference_mode()
def _encode(vae: ConvVAE, dev: torch.device, data_dir: Path, out_dir: Path, todo: list[dict],
            dtype: str, batch_size: int, progress: bool, skip_corrupt: bool,
            vae_sha256: str = "") -> tuple[int, list[str]]:
    """Encode ``todo`` in batches that run across episodes; returns (frames, skipped files)."""
    bar = tqdm(total=sum(int(e["length"]) for e in todo), unit="img", disable=not progress,
               desc="encode", dynamic_ncols=True)
    frames = 0
    skipped: list[str] = []
    reader = Prefetch(_read(data_dir, todo, skip_corrupt), READ_AHEAD, name="encode-reader")

    def episodes() -> Iterator[_Episode]:
        for entry, arrays in reader:
            if isinstance(arrays, ShardError):
                warnings.warn(f"skipping: {arrays}", stacklevel=5)  # at encode_rollouts' caller
                skipped.append(entry["file"])
                bar.total -= int(entry["length"])
                continue
            yield _Episode(entry, arrays, vae.z_dim, dtype)

    try:
        for batch, pieces in batches_across(episodes(), batch_size, lambda ep: ep.arrays["obs"]):
            mu_t, logvar_t = vae.encode(frames_to_tensor(torch.from_numpy(batch).to(dev)))
            mu, logvar = mu_t.float().cpu().numpy(), logvar_t.float().cpu().numpy()
            offset = 0
            for ep, a, b in pieces:
                ep.mu[a:b] = mu[offset:offset + b - a]
                ep.logvar[a:b] = logvar[offset:offset + b - a]
                offset += b - a
                ep.filled += b - a
                if ep.filled == ep.length:
                    _write(out_dir, ep, vae_sha256)
            frames += len(batch)
            bar.update(len(batch))
    finally:
        reader.close()
        bar.close()
    return frames, skipped


def _write(out_dir: Path, ep: _Episode, vae_sha256: str) -> None:
    entry = ep.entry
    arrays = {"mu": ep.mu, "logvar": ep.logvar, **{k: ep.arrays[k] for k in COPIED}}
    sha = write_shard(out_dir / entry["file"], arrays, kind="latent")
    append_manifest(out_dir, {
        "index": entry["index"], "file": entry["file"], "seed": entry.get("seed"),
        "length": ep.length, "return": entry.get("return"), "sha256": sha,
        "rollout_sha256": entry["sha256"], "vae_sha256": vae_sha256,
    })
    ep.arrays = {}  # the frames are no longer needed


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="rollout folder written by `worldmodels collect`")
    parser.add_argument("--vae", required=True, type=Path,
                        help="V checkpoint written by `worldmodels train-vae` (OUT/vae.pt)")
    parser.add_argument("--out", required=True, type=Path,
                        help="latent folder: ep_*.npz, manifest.jsonl, encode.json (rerun to "
                             "encode new rollouts)")
    parser.add_argument("--dtype", default="float16", choices=DTYPES,
                        help="dtype of the stored mu and logvar (default: float16)")
    parser.add_argument("--batch-size", type=positive_int, default=1000,
                        help="frames per forward pass, across episodes (default: 1000)")
    add_device_argument(parser)
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip corrupt or missing shards with a warning instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    encode_rollouts(args.data, args.vae, args.out, dtype=args.dtype, batch_size=args.batch_size,
                    device=args.device, progress=not args.no_progress,
                    skip_corrupt=args.skip_corrupt)
    return 0
