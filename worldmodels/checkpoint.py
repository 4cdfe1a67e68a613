"""Checkpoints: plain tensors and dicts, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict::

    {
        "kind": "vae" | "mdnrnn" | "controller",
        "version": worldmodels.__version__,
        "config": {...},            # the component's config as a dict (rebuilds the model)
        "model": state_dict,
        "optimizer": state_dict,    # optional
        "step": int, "epoch": int,
        "parents": {"vae_sha256": ..., "mdnrnn_sha256": ...},   # what it was trained against
        "extra": {...},             # stage-specific plain data (RNG states, ES history, ...)
    }

Writes are atomic (temp file + rename): a crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .utils import atomic_write, relative_path, sha256_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of the wrong kind or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, *, kind: str, config: dict, model: dict,
                    optimizer: dict | None = None, step: int = 0, epoch: int = 0,
                    parents: dict[str, str] | None = None, extra: dict | None = None,
                    model_args: dict | None = None) -> Path:
    """Write a checkpoint atomically. ``model_args`` are the model's constructor arguments
    (its shapes, apart from the training settings in ``config``): ``Model(**model_args)``
    rebuilds it."""
    payload = {
        "kind": kind,
        "version": __version__,
        "model_args": dict(model_args or {}),
        "config": config,
        "model": model,
        "optimizer": optimizer,
        "step": int(step),
        "epoch": int(epoch),
        "parents": dict(parents or {}),
        "extra": dict(extra or {}),
    }
    try:
        return atomic_write(path, lambda p: torch.save(payload, p))
    except (OSError, RuntimeError) as e:  # a full disk: torch says "unexpected pos ..."
        raise CheckpointError(f"cannot write checkpoint {path} (disk full or not writable?): "
                              f"{e}".splitlines()[0]) from e


def load_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "weights_only" in str(e):
            # Never pass on torch's advice to retry with weights_only=False: that would run
            # whatever code the file holds.
            detail = "it holds objects other than tensors and plain data, which are not loaded"
        raise CheckpointError(f"cannot read checkpoint {path}: it is corrupt, truncated or "
                              f"not a worldmodels checkpoint ({type(e).__name__}: {detail})"
                              ) from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a worldmodels checkpoint (no 'kind'/'model' keys)")
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{path} is not a complete worldmodels checkpoint (its 'config' "
                              "or 'model' entry is missing or not a dict)")
    if kind is not None and ckpt["kind"] != kind:
        raise CheckpointError(f"{path} is a {ckpt['kind']!r} checkpoint, expected {kind!r}")
    if ckpt.get("version", "").split(".")[:2] != __version__.split(".")[:2]:
        warnings.warn(f"{path} was written by worldmodels {ckpt.get('version')}, "
                      f"this is {__version__}", stacklevel=2)
    ckpt["path"] = str(path)
    return ckpt


def load_state(module: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``module.load_state_dict`` with an error that lists every mismatched tensor."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {path} does not fit {type(module).__name__}:"]
        if missing:
            lines.append(f"  missing: {missing}")
        if unexpected:
            lines.append(f"  unexpected: {unexpected}")
        lines += [f"  shape {s}" for s in shapes]
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state)


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """The identity of a checkpoint file, recorded by the stages trained against it."""
    return sha256_file(path)


def check_parent(ckpt: dict, key: str, parent_path: str | os.PathLike) -> None:
    """Refuse a checkpoint trained against another parent (e.g. an M against another V)."""
    expected = ckpt.get("parents", {}).get(key)
    if expected is None:
        raise CheckpointError(f"{ckpt.get('path')} records no {key}; cannot verify it was "
                              f"trained against {parent_path}")
    actual = checkpoint_sha256(parent_path)
    if actual != expected:
        raise CheckpointError(
            f"{ckpt.get('path')} was trained against a different {key.removesuffix('_sha256')} "
            f"checkpoint (sha256 {expected[:12]}...), but {parent_path} has sha256 {actual[:12]}...")


def relative_parents(path: str | os.PathLike, **parents: str | os.PathLike) -> dict[str, str]:
    """``{"<key>_rel": parent path relative to the folder of checkpoint ``path``}`` for each
    ``<key>=parent``: recorded beside the absolute ``<key>``, so that a run folder moved or
    copied whole finds its own parents (:func:`recorded_parent`)."""
    rel = {key: relative_path(parent, Path(path).resolve().parent)
           for key, parent in parents.items()}
    return {f"{key}_rel": r for key, r in rel.items() if r is not None}  # None: another drive


def recorded_parent(extra: dict, key: str, path: str | os.PathLike) -> Path | None:
    """The parent checkpoint that checkpoint ``path`` records under ``key`` in its ``extra``
    (e.g. a C's ``vae_path``), None when it records none: where it lies relative to ``path``
    (``<key>_rel``) when that file exists, so that a moved or copied run folder uses its own
    copy; else the recorded path, a relative one read from ``path``'s folder (the shipped
    agents name their parts so)."""
    rel = extra.get(f"{key}_rel")
    folder = Path(path).parent
    if rel is not None and (folder / rel).is_file():
        return folder / rel
    if key not in extra:
        return None
    recorded = Path(extra[key])
    return recorded if recorded.is_absolute() else folder / recorded
