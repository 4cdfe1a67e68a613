"""Run folders: the resolved config written at start, a ``done.json`` at the end, and a lock
(``run.lock``) held by the process running the stage, so that a second command on the same
folder is refused instead of mixing two runs.

Rules shared by every stage: rerunning the same command resumes; a finished stage is not
redone; a folder started with another config is refused (so nothing finished is
overwritten and no run silently mixes two configs).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from .utils import atomic_write_json, read_json, remove_stale_temp_files

CONFIG = "config.json"
DONE = "done.json"
LOCK = "run.lock"

_HELD: dict[str, IO] = {}  # folders this process owns: resolved path -> its open lock file


class RunConfigMismatch(ValueError):
    """A run folder holds a run started with a different config."""


class RunLocked(ValueError):
    """Another process is running a stage in this folder."""


def _lock(folder: Path, stage: str) -> bool:
    """Own ``folder`` (``folder/run.lock``, an flock) until :func:`mark_done` or the process
    ends, however it ends; a second process is refused at once. Reentrant in one process:
    returns whether this call took the lock (False: this process held it already)."""
    key = str(folder.resolve())
    if key in _HELD:
        return False
    f = open(folder / LOCK, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunLocked(f"another worldmodels process is running in {folder} (it holds "
                        f"{folder / LOCK}); wait for it to finish or stop it, then run "
                        f"`{stage}` again") from None
    _HELD[key] = f
    return True


def release(folder: str | os.PathLike) -> None:
    """Give up this process's lock on ``folder`` (if it holds one)."""
    f = _HELD.pop(str(Path(folder).resolve()), None)
    if f is not None:
        f.close()


def start_run(folder: str | os.PathLike, config: dict[str, Any], stage: str,
              filename: str = CONFIG) -> Path:
    """Create ``folder`` and its config file, or check that an existing one matches.

    ``filename`` is ``config.json`` for model folders; data folders name it after their
    stage (``collect.json``, ``encode.json``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken = _lock(folder, stage)   # before reading the config: no two runs race past the check
    if taken:  # this run owns the folder: what a killed writer left half-written goes
        remove_stale_temp_files(folder)
    path = folder / filename
    record = {"stage": stage, "config": config}
    if path.exists():
        old = read_json(path)
        if _canonical(old) != _canonical(_without_new_defaults(record, old)):
            if taken:
                release(folder)  # a refused run does not keep the folder
            diff = _diff(old.get("config", {}), config)
            raise RunConfigMismatch(
                f"{folder} holds a {old.get('stage')} run with a different config "
                f"({diff}); use another output folder, or the original options to resume")
    else:
        atomic_write_json(path, record)
    return folder


def _without_new_defaults(new: Any, old: Any) -> Any:
    """``new`` less the fields that ``old`` (a run started by an earlier version) lacks and
    that hold the default which reproduces that version's behaviour (``ADDED_FIELDS``), so
    an upgrade does not orphan a run folder."""
    from .config import ADDED_FIELDS

    if not (isinstance(new, dict) and isinstance(old, dict)):
        return new
    return {k: _without_new_defaults(v, old[k]) if k in old else v for k, v in new.items()
            if k in old or k not in ADDED_FIELDS or ADDED_FIELDS[k] != v}


def is_done(folder: str | os.PathLike) -> bool:
    return (Path(folder) / DONE).is_file()


def mark_done(folder: str | os.PathLike, summary: dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / DONE, summary)
    release(folder)


def read_done(folder: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(folder) / DONE)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts) or "stage differs"
