"""Shipped agents: a trained V, M and C committed under ``agents/zoo/<name>/``, so that a
newcomer can watch an agent (``worldmodels play --agent NAME``), score it (``evaluate
--agent``) or drive its dream (``dream --agent``) without training one.

A shipped agent is a folder with ``vae.pt`` (V's weights stored in float16 to halve the
file), ``mdnrnn.pt``, ``controller.pt`` and ``manifest.json``::

    {"name": ..., "label": "what this agent is (e.g. the best so far, not the final one)",
     "files": {"vae": {"file": "vae.pt", "sha256": ..., "bytes": ...}, "mdnrnn": ..., "controller": ...},
     "source": {"controller": path, "controller_sha256": ..., "vae_sha256": ..., "mdnrnn_sha256": ...},
     "score": {...the results.json summary of the source C..., "command": ..., "machine": ...}}

Loading checks every file against the manifest's sha256 and refuses one that differs (a
changed or damaged file); the checkpoints themselves load with ``weights_only=True``. M and C
record the shipped V's and M's hashes as their parents, so the usual parent checks hold.
``worldmodels export-agent`` writes such a folder from a trained C.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint, save_checkpoint
from .utils import atomic_write_json

MANIFEST = "manifest.json"
PARTS = ("vae", "mdnrnn", "controller")


def zoo_dir() -> Path:
    """Where the shipped agents live: ``agents/zoo`` (installed as ``worldmodels.agents``)."""
    import worldmodels.agents

    return Path(worldmodels.agents.__file__).resolve().parent / "zoo"


def available() -> list[str]:
    """Names of the shipped agents."""
    root = zoo_dir()
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []


@dataclass(frozen=True)
class ShippedAgent:
    folder: Path
    manifest: dict[str, Any]

    def path(self, part: str) -> Path:
        return self.folder / self.manifest["files"][part]["file"]

    @property
    def controller(self) -> Path:
        return self.path("controller")

    @property
    def vae(self) -> Path:
        return self.path("vae")

    @property
    def mdnrnn(self) -> Path:
        return self.path("mdnrnn")


def load_shipped(name_or_folder: str | os.PathLike) -> ShippedAgent:
    """The shipped agent ``name`` (a folder of ``agents/zoo``) or the agent folder given,
    every file checked against its manifest's sha256 (CheckpointError if one differs)."""
    folder = zoo_dir() / str(name_or_folder)
    if not (folder / MANIFEST).is_file():
        folder = Path(name_or_folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no shipped agent {str(name_or_folder)!r}: neither "
                                f"{zoo_dir() / str(name_or_folder)} nor {folder} holds a "
                                f"{MANIFEST}; shipped agents: {available() or 'none'}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = {part: manifest["files"][part] for part in PARTS}
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest_path} is not a shipped-agent manifest ({e})") from None
    for part, entry in files.items():
        path = folder / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path} ({part} of the shipped agent) is missing")
        digest = checkpoint_sha256(path)
        if digest != entry["sha256"]:
            raise CheckpointError(f"{path} has sha256 {digest[:16]}..., its manifest says "
                                  f"{entry['sha256'][:16]}...: the file was changed or damaged; "
                                  "refusing to load it")
    return ShippedAgent(folder, manifest)


def export_agent(controller: str | os.PathLike, out_dir: str | os.PathLike, name: str,
                 label: str, results: str | os.PathLike | None = None,
                 command: str | None = None, machine: str | None = None) -> ShippedAgent:
    """Write C (with the V and M it records) as a shipped agent in ``out_dir``.

    V's and M's tensors are stored in float16; ``results`` (a ``worldmodels evaluate``
    results.json of this C) gives the score recorded in the manifest.
    """
    from worldmodels.agents.world_models_agent import WorldModelsAgent

    agent = WorldModelsAgent.from_checkpoints(controller)  # verifies V and M against C
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = {part: load_checkpoint(agent.sources[part], kind=part) for part in PARTS}
    score = None
    if results is not None:
        record = json.loads(Path(results).read_text())
        if record.get("controller_sha256") != checkpoint_sha256(controller):
            raise ValueError(f"{results} scores another controller than {controller}")
        score = {**record["summary"], "env_id": record.get("env_id"),
                 "seeds": f"{record['seeds'][0]}..{record['seeds'][-1]}",
                 "command": command, "machine": machine}

    def half(state: dict) -> dict:
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}

    save_checkpoint(out / "vae.pt", kind="vae", config=src["vae"]["config"],
                    model=half(src["vae"]["model"]), model_args=agent.vae.model_args)
    vae_sha = checkpoint_sha256(out / "vae.pt")
    m = src["mdnrnn"]
    keep = ("initial_mu", "initial_logvar")
    save_checkpoint(out / "mdnrnn.pt", kind="mdnrnn", config=m["config"], model=half(m["model"]),
                    model_args=agent.mdnrnn.model_args,
                    parents={"vae_sha256": vae_sha},
                    extra={k: m["extra"][k].half() for k in keep if k in m["extra"]}
                    | {"vae_path": "vae.pt"})
    m_sha = checkpoint_sha256(out / "mdnrnn.pt")
    c = src["controller"]
    extra = {k: c["extra"][k] for k in ("z_dim", "hidden_size") if k in c["extra"]}
    save_checkpoint(out / "controller.pt", kind="controller", config=c["config"], model=c["model"],
                    model_args=agent.controller.model_args,
                    parents={"vae_sha256": vae_sha, "mdnrnn_sha256": m_sha},
                    extra=extra | {"vae_path": "vae.pt", "mdnrnn_path": "mdnrnn.pt"})
    manifest = {
        "name": name, "label": label,
        "files": {part: {"file": f"{part}.pt", "sha256": checkpoint_sha256(out / f"{part}.pt"),
                         "bytes": (out / f"{part}.pt").stat().st_size} for part in PARTS},
        "source": {"controller": str(controller),
                   **{f"{part}_sha256": checkpoint_sha256(agent.sources[part]) for part in PARTS}},
        "score": score,
    }
    atomic_write_json(out / MANIFEST, manifest)
    return load_shipped(out)
