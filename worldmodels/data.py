"""Episode shards and manifests: the on-disk formats shared by every stage.

A data folder (rollouts from ``collect``, or latents from ``encode``) holds one compressed
``.npz`` per episode, ``ep_000042.npz``, and ``manifest.jsonl`` listing every finished episode
(one JSON object a line: index, file, seed, length, return, sha256, ...).

Rollout shard (``kind="rollout"``), T steps:
    obs         uint8   (T, 64, 64, 3)  frame the policy saw before action[t]
    action      float32 (T, A)          A = 3 (CarRacing: steer, gas, brake), 1 (Take Cover: -1/0/1)
    reward      float32 (T,)            reward of action[t]
    terminated  bool    (T,)            the env ended after action[t] (lap done, off-field)
    truncated   bool    (T,)            the time limit ended the episode after action[t]
Latent shard (``kind="latent"``): ``mu`` and ``logvar`` (T, Z) float32 or float16 instead of
``obs``, with the same action/reward/terminated/truncated.

Shards are written to a temporary file and renamed, so a shard that exists is complete;
a corrupt or truncated one raises :class:`ShardError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from .utils import atomic_write, sha256_file

MANIFEST = "manifest.jsonl"
SHARD_GLOB = "ep_*.npz"
SHARD_RE = re.compile(r"ep_(\d+)\.npz")
"""A shard's file name (:func:`shard_name`); group 1 is the episode index."""

_COMMON = {
    "action": (np.float32, ("T", "A")),
    "reward": (np.float32, ("T",)),
    "terminated": (np.bool_, ("T",)),
    "truncated": (np.bool_, ("T",)),
}
SCHEMAS: dict[str, dict[str, tuple[object, tuple]]] = {
    "rollout": {"obs": (np.uint8, ("T", 64, 64, 3)), **_COMMON},
    "latent": {"mu": ((np.float32, np.float16), ("T", "Z")),
               "logvar": ((np.float32, np.float16), ("T", "Z")), **_COMMON},
}


class ShardError(ValueError):
    """A shard or manifest is missing, corrupt, truncated or of the wrong shape/dtype."""


def shard_name(index: int) -> str:
    return f"ep_{index:06d}.npz"


def write_shard(path: str | os.PathLike, arrays: dict[str, np.ndarray], kind: str = "rollout") -> str:
    """Validate and atomically write one episode; returns the file's sha256."""
    validate(arrays, kind, path)
    atomic_write(path, lambda p: _savez(p, arrays))
    return sha256_file(path)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez_compressed appends ".npz" to names without it; write through a file object.
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def read_shard(path: str | os.PathLike, kind: str = "rollout",
               keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Load and validate an episode; ``keys`` limits what is decompressed."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            wanted = list(keys) if keys is not None else list(data.files)
            missing = [k for k in wanted if k not in data.files]
            if missing:
                raise ShardError(f"{path}: missing arrays {missing} (has {sorted(data.files)})")
            arrays = {k: data[k] for k in wanted}
    except ShardError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ShardError(f"corrupt or truncated shard {path}: {type(e).__name__}: {e}") from e
    validate(arrays, kind, path, partial=keys is not None)
    return arrays


def validate(arrays: dict[str, np.ndarray], kind: str, path: object = "<memory>",
             partial: bool = False) -> int:
    """Check dtypes and shapes against the schema; returns T. Raises ShardError."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown shard kind {kind!r}; expected one of {sorted(SCHEMAS)}")
    schema = SCHEMAS[kind]
    if not partial:
        missing = sorted(set(schema) - set(arrays))
        if missing:
            raise ShardError(f"{path}: missing arrays {missing}")
    dims: dict[str, int] = {}
    for key, arr in arrays.items():
        if key not in schema:
            continue
        dtypes, shape = schema[key]
        dtypes = dtypes if isinstance(dtypes, tuple) else (dtypes,)
        if arr.dtype not in [np.dtype(d) for d in dtypes]:
            raise ShardError(f"{path}: {key} has dtype {arr.dtype}, expected "
                             f"{' or '.join(np.dtype(d).name for d in dtypes)}")
        ok = arr.ndim == len(shape)
        for size, want in zip(arr.shape, shape):
            if isinstance(want, str):
                ok = ok and dims.setdefault(want, size) == size
            else:
                ok = ok and size == want
        if not ok:
            raise ShardError(f"{path}: {key} has shape {arr.shape}, expected "
                             f"{tuple(dims.get(s, s) if isinstance(s, str) else s for s in shape)}")
    if dims.get("T", 1) == 0:
        raise ShardError(f"{path}: episode has no steps")
    return dims.get("T", 0)


def read_manifest(folder: str | os.PathLike) -> list[dict]:
    """Entries of ``folder/manifest.jsonl`` sorted by index ([] if there is none).

    A last line cut short by a crash is ignored (its shard is re-verified by the caller);
    any other malformed line is an error naming the file and line.
    """
    path = Path(folder) / MANIFEST
    if not path.exists():
        return []
    entries: dict[int, dict] = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                warnings.warn(f"{path}: ignoring incomplete last line {n}", stacklevel=2)
                continue
            raise ShardError(f"{path}: line {n} is not valid JSON ({e})") from e
        if not isinstance(entry, dict) or not {"index", "file"} <= set(entry):
            raise ShardError(f"{path}: line {n} is not a manifest entry (needs 'index' and "
                             "'file')")
        name = entry["file"]
        # A shard is a plain file name inside the folder: never follow a path out of it.
        if not isinstance(name, str) or not SHARD_RE.fullmatch(name):
            raise ShardError(f"{path}: line {n}: 'file' must be a shard name like "
                             f"ep_000042.npz in the folder itself, got {name!r}")
        if not isinstance(entry["index"], int) or entry["index"] < 0:
            raise ShardError(f"{path}: line {n}: 'index' must be an integer >= 0, "
                             f"got {entry['index']!r}")
        entries[entry["index"]] = entry
    return [entries[i] for i in sorted(entries)]


def append_manifest(folder: str | os.PathLike, entry: dict) -> None:
    """Append one finished episode to ``folder/manifest.jsonl`` (:func:`append_jsonl`)."""
    append_jsonl(Path(folder) / MANIFEST, entry)


def append_jsonl(path: str | os.PathLike, entry: dict) -> None:
    """Append one JSON line; a single short write with fsync, so lines stay whole.

    A last line cut short by a crash (or a full disk) is dropped first, so that the new line
    starts on a line of its own and the file stays readable (its record is redone).
    """
    line = json.dumps(entry, sort_keys=True) + "\n"
    path = Path(path)
    if path.is_file():
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    f.seek(0)
                    data = f.read()
                    f.truncate(data.rfind(b"\n") + 1)
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def episode_files(folder: str | os.PathLike, kind: str = "rollout", verify: bool = False,
                  skip_corrupt: bool = False) -> list[Path]:
    """The shards of a data folder listed in its manifest, in index order.

    ``verify`` checks each file's sha256 against the manifest. With ``skip_corrupt``, a
    missing, corrupt or mismatched shard is skipped with a warning instead of raising.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"data folder not found: {folder}")
    entries = read_manifest(folder)
    if not entries:
        raise ShardError(f"{folder} has no finished episodes ({MANIFEST} is missing or empty)")
    files = []
    for entry in entries:
        path = folder / entry["file"]
        try:
            if not path.is_file():
                raise ShardError(f"shard listed in {folder / MANIFEST} is missing: {path}")
            if verify and sha256_file(path) != entry["sha256"]:
                raise ShardError(f"shard {path} does not match the sha256 in its manifest "
                                 "(corrupt or changed)")
        except ShardError as e:
            if not skip_corrupt:
                raise
            warnings.warn(f"skipping: {e}", stacklevel=2)
            continue
        files.append(path)
    return files


def load_episodes(files: Iterable[Path], kind: str, keys: Iterable[str] | None = None,
                  skip_corrupt: bool = False) -> list[dict[str, np.ndarray]]:
    """Read many shards; with ``skip_corrupt`` unreadable ones are skipped with a warning."""
    out = []
    for path in files:
        try:
            out.append(read_shard(path, kind, keys))
        except ShardError as e:
            if not skip_corrupt:
                raise
            warnings.warn(f"skipping: {e}", stacklevel=2)
    return out


def read_episode(folder: Path, entry: dict, kind: str = "rollout",
                 keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read the shard of a manifest entry, checking its sha256 and length first.

    The hash check costs ~2 ms per 1000-frame shard and turns any damage into a
    :class:`ShardError` naming the file (a damaged deflate stream would otherwise surface as
    a bare ``zlib.error``).
    """
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise ShardError(f"shard listed in {Path(folder) / 'manifest.jsonl'} is missing: {path}")
    if sha256_file(path) != entry["sha256"]:
        raise ShardError(f"shard {path} does not match the sha256 in its manifest "
                         "(corrupt or changed)")
    arrays = read_shard(path, kind, keys)
    length = len(next(iter(arrays.values())))
    if length != int(entry["length"]):
        raise ShardError(f"shard {path} has {length} steps, its manifest says {entry['length']}")
    return arrays


C = TypeVar("C")  # a chunk of frames: an episode, a window of episodes


def batches_across(chunks: Iterable[C], batch_size: int, frames: Callable[[C], np.ndarray]
                   ) -> Iterator[tuple[np.ndarray, list[tuple[C, int, int]]]]:
    """Cut a stream of chunks (episodes, windows of episodes) into batches of ``batch_size``
    frames that run across the chunks' boundaries, so that every batch but the last is full.

    ``frames(chunk)`` is a chunk's array of frames. Yields ``(batch, pieces)``: the batch's
    frames and where they came from, ``(chunk, start, end)`` for ``frames(chunk)[start:end]``.
    A batch of a single piece is a view, not a copy.
    """
    parts: list[np.ndarray] = []
    pieces: list[tuple[C, int, int]] = []
    filled = 0
    for chunk in chunks:
        array = frames(chunk)
        start = 0
        while start < len(array):
            take = min(batch_size - filled, len(array) - start)
            parts.append(array[start:start + take])
            pieces.append((chunk, start, start + take))
            start += take
            filled += take
            if filled == batch_size:
                yield _concatenate(parts), pieces
                parts, pieces, filled = [], [], 0
    if pieces:
        yield _concatenate(parts), pieces


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
