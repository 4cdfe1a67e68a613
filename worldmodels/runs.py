"""Run folders: the resolved config written at start, a ``done.json`` at the end, and a lock
(``run.lock``) held by the process running the stage, so that a second command on the same
folder is refused instead of mixing two runs.

Rules shared by every stage: rerunning the same command resumes; a finished stage is not
redone; a folder started with another config is refused (so nothing finished is
overwritten and no run silently mixes two configs).

:class:`RunLayout` names the folders and files of a whole pipeline run, once.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from .utils import atomic_write_json, read_json, relative_path, remove_stale_temp_files

CONFIG = "config.json"
DONE = "done.json"
LOCK = "run.lock"
COLLECT_JSON = "collect.json"  # the record of a rollouts folder
ENCODE_JSON = "encode.json"    # the record of a latents folder
RECORD_FILES = (CONFIG, COLLECT_JSON, ENCODE_JSON)

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
              filename: str = CONFIG, section: str = "") -> Path:
    """Create ``folder`` and its config file, or check that an existing one matches.

    ``filename`` is ``config.json`` for model folders; data folders name it after their
    stage (``collect.json``, ``encode.json``). A file written by an earlier version matches
    when the fields added since hold their old-behaviour default (``config.ADDED_FIELDS``)
    and the fields removed since behaved as the ones that replaced them do now
    (``config.REMOVED_FIELDS``; ``section``: the config section whose fields ``config`` holds
    at its top level); one they cannot express is refused.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; {stage} writes a folder there")
    # Another kind of stage's folder (`collect --out <latents>`, `encode --data X --out X`):
    # refused before the lock is taken, so the folder is left untouched.
    others = [folder / name for name in RECORD_FILES if name != filename
              and (folder / name).is_file()]
    if others:
        other = read_json(others[0])
        kind = other.get("stage", others[0].stem) if isinstance(other, dict) else others[0].stem
        raise RunConfigMismatch(f"{folder} holds a {kind} run ({others[0].name}), not a {stage} "
                                f"run; give {stage} a folder of its own")
    folder.mkdir(parents=True, exist_ok=True)
    taken = _lock(folder, stage)   # before reading the config: no two runs race past the check
    if taken:  # this run owns the folder: what a killed writer left half-written goes
        remove_stale_temp_files(folder)
    path = folder / filename
    record = {"stage": stage, "config": config}
    if path.exists():
        old = read_json(path)
        try:
            old = _without_removed_fields(old, section)
        except ValueError as e:
            if taken:
                release(folder)  # a refused run does not keep the folder
            raise RunConfigMismatch(f"{folder} holds a {old.get('stage')} run that this version "
                                    f"cannot resume: {e}; use another output folder") from None
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


def input_folders(folders: Sequence[str | os.PathLike], out: str | os.PathLike, key: str,
                  filename: str = CONFIG) -> list[str]:
    """How the record of the stage writing ``out`` names its input ``folders`` (record field
    ``key``): relative to ``out``, so that a run folder moved or copied whole resumes there and
    reads its own inputs, not the source's. A record of an earlier version, which named the same
    folders by absolute path, is kept as it was (the run resumes); a folder on another drive
    than ``out`` (Windows) is named by absolute path."""
    absolute = [str(Path(d).resolve()) for d in folders]
    path = Path(out) / filename
    if path.is_file():
        old = read_json(path)
        config = old.get("config") if isinstance(old, dict) else None
        if isinstance(config, dict) and config.get(key) == absolute:
            return absolute
    relative = [relative_path(d, out) for d in absolute]
    return absolute if None in relative else [str(r) for r in relative]


def _without_new_defaults(new: Any, old: Any) -> Any:
    """``new`` less the fields that ``old`` (a run started by an earlier version) lacks and
    that hold the default which reproduces that version's behaviour (``ADDED_FIELDS``), so
    an upgrade does not orphan a run folder."""
    from .config import ADDED_FIELDS

    if not (isinstance(new, dict) and isinstance(old, dict)):
        return new
    return {k: _without_new_defaults(v, old[k]) if k in old else v for k, v in new.items()
            if k in old or k not in ADDED_FIELDS or ADDED_FIELDS[k] != v}


def _without_removed_fields(old: Any, section: str) -> Any:
    """The record ``old`` (written by an earlier version) less the config fields removed since
    (``REMOVED_FIELDS``; a ValueError when the fields that replaced them cannot express one):
    :func:`_without_new_defaults`'s counterpart."""
    from .config import without_removed_fields

    if not (isinstance(old, dict) and isinstance(old.get("config"), dict)):
        return old
    return {**old, "config": without_removed_fields(old["config"], section)}


def is_done(folder: str | os.PathLike) -> bool:
    return (Path(folder) / DONE).is_file()


def mark_done(folder: str | os.PathLike, summary: dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / DONE, summary)
    release(folder)


def read_done(folder: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(folder) / DONE)


def print_already_finished(stage: str, what: str | os.PathLike, detail: str = "") -> None:
    """Say that ``stage``'s result ``what`` is already there, so it is not redone: the one
    wording of every stage's skip (``detail``: what the finished result holds)."""
    print(f"{stage}: {what} is already finished" + (f" ({detail})" if detail else "")
          + "; nothing to do")


VAE_CHECKPOINT = "vae.pt"
MDNRNN_CHECKPOINT = "mdnrnn.pt"
CONTROLLER_LATEST = "controller.pt"
"""C's latest CMA-ES mean, with the ES history to resume from."""
CONTROLLER_BEST = "controller_best.pt"
"""The C with the best real-env validation score (only when C ran real evaluations)."""
TB = "tb"
"""A stage folder's TensorBoard folder, when the stage runs alone."""


@dataclass(frozen=True)
class RunLayout:
    """Where a pipeline run (``worldmodels pipeline --run-dir RUN``) keeps everything::

        RUN/rollouts/  vae/vae.pt  latents/  rnn/mdnrnn.pt  controller/controller{,_best}.pt
        RUN/eval/results.json  tb/<stage>/  timings.json  preset.json  iterate.json
        RUN/rounds/NN/{rollouts,latents,rnn,controller}/  tb/rounds/NN/<stage>/  (iterate)

    ``RunLayout(RUN).round(k)`` is iterate's round k: its own rollouts, latents, M and C under
    ``rounds/NN``, with the run's V and the run's files.
    """

    root: Path
    k: int = 0
    """The round: 0 for the pipeline's own stages, k >= 1 for iterate's round k."""

    def round(self, k: int) -> "RunLayout":
        return replace(self, k=k)

    @property
    def folder(self) -> Path:
        """The folder of this round's stages: RUN, or RUN/rounds/NN."""
        return self.root if self.k == 0 else self.root / "rounds" / f"{self.k:02d}"

    def tb(self, stage: str = "") -> Path:
        """The TensorBoard folder of ``stage``: RUN/tb/<stage>, in a round
        RUN/tb/rounds/NN/<stage> (no stage: the folder of them all)."""
        return self.root / TB / self.folder.relative_to(self.root) / stage

    @property
    def rollouts(self) -> Path:
        return self.folder / "rollouts"

    @property
    def latents(self) -> Path:
        return self.folder / "latents"

    @property
    def vae_dir(self) -> Path:
        return self.root / "vae"  # one V for every round: a new V would orphan every latent

    @property
    def vae(self) -> Path:
        return self.vae_dir / VAE_CHECKPOINT

    @property
    def rnn_dir(self) -> Path:
        return self.folder / "rnn"

    @property
    def rnn(self) -> Path:
        return self.rnn_dir / MDNRNN_CHECKPOINT

    @property
    def controller_dir(self) -> Path:
        return self.folder / "controller"

    @property
    def controller(self) -> Path:
        return self.controller_dir / CONTROLLER_LATEST

    @property
    def controller_best(self) -> Path:
        return self.controller_dir / CONTROLLER_BEST

    @property
    def results(self) -> Path:
        """The evaluation of the run's final C (``worldmodels evaluate``'s results.json)."""
        return self.root / "eval" / "results.json"

    @property
    def timings(self) -> Path:
        """Wall time per stage, accumulated over reruns."""
        return self.root / "timings.json"

    @property
    def preset(self) -> Path:
        """The resolved preset of the run."""
        return self.root / "preset.json"

    @property
    def iterate_summary(self) -> Path:
        """Per-round summary of iterate."""
        return self.root / "iterate.json"

    @property
    def round0_models(self) -> Path:
        """Round 0's Ms and the chosen one (``iterate.round0_models`` > 1)."""
        return self.root / "round0_models.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts) or "stage differs"
