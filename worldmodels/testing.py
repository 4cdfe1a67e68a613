"""Tiny models, checkpoints and presets for tests and quick benchmarks: random V, M and C
small enough to run in milliseconds, written as real checkpoints (M records V as its parent,
C records both), and a ``tiny`` preset for pipeline runs of seconds.

Two families: ``tiny_world_models`` (z=4, h=8, 2 Gaussians; with ``save_controller``) and
``save_tiny_models`` (z=8, h=16, 3 Gaussians; with ``tiny_mdnrnn``), as the suites that use
them were written.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import checkpoint_sha256, save_checkpoint
from .config import ControllerConfig, MDNRNNConfig, Preset, VAEConfig, get_preset
from .controller import Controller
from .mdnrnn import MDNRNN
from .vae import ConvVAE

Z, H = 4, 8


def save_vae(path: Path, seed: int) -> Path:
    """A random V (z=4) checkpoint."""
    torch.manual_seed(seed)
    save_checkpoint(path, kind="vae", config=asdict(VAEConfig(z_dim=Z)), model=ConvVAE(Z).state_dict())
    return path


def tiny_world_models(folder: Path, seed: int = 0, *, action_dim: int = 3, predict_reward: bool = True,
                      done_bias: float = -4.0, names: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """Random V (z=4) and M (h=8, 2 Gaussians) checkpoints, M recording V as its parent.

    ``action_dim`` and ``predict_reward`` give M another world's shape (Take Cover: 1 and False);
    ``done_bias`` sets M's done logit (-4: dreams mostly run to their step limit); ``names`` are
    the two files' paths under ``folder`` (default ``vae{seed}.pt`` and ``mdnrnn{seed}.pt``)."""
    vae_name, mdnrnn_name = names or (f"vae{seed}.pt", f"mdnrnn{seed}.pt")
    vae_path = save_vae(folder / vae_name, seed)
    cfg = MDNRNNConfig(z_dim=Z, hidden_size=H, n_gaussians=2, action_dim=action_dim,
                       predict_reward=predict_reward)
    torch.manual_seed(seed + 1)
    m = MDNRNN(z_dim=Z, action_dim=action_dim, hidden_size=H, n_gaussians=2,
               predict_reward=predict_reward)
    assert m.done_head is not None
    with torch.no_grad():
        m.done_head.bias.fill_(done_bias)
    gen = torch.Generator().manual_seed(seed)
    mdnrnn_path = folder / mdnrnn_name
    save_checkpoint(mdnrnn_path, kind="mdnrnn", config=asdict(cfg), model=m.state_dict(),
                    parents={"vae_sha256": checkpoint_sha256(vae_path)},
                    extra={"initial_mu": torch.randn(5, Z, generator=gen),
                           "initial_logvar": torch.full((5, Z), -2.0),
                           "vae_path": str(vae_path)})
    return vae_path, mdnrnn_path


def save_controller(path: Path, vae_path: Path, mdnrnn_path: Path, seed: int = 0, *,
                    action_dim: int = 3, action_map: str = "carracing",
                    config: ControllerConfig | None = None) -> Path:
    """A controller checkpoint with random weights, trained (so it says) against V and M
    (``config``: the ControllerConfig it records, default ``ControllerConfig()``)."""
    torch.manual_seed(seed)
    c = Controller(Z, H, action_dim=action_dim, action_map=action_map)
    with torch.no_grad():
        c.fc.weight.mul_(5.0)
    save_checkpoint(path, kind="controller", config=asdict(config or ControllerConfig()),
                    model=c.state_dict(), model_args=c.model_args,
                    parents={"vae_sha256": checkpoint_sha256(vae_path),
                             "mdnrnn_sha256": checkpoint_sha256(mdnrnn_path)},
                    extra={"vae_path": str(vae_path), "mdnrnn_path": str(mdnrnn_path),
                           "z_dim": Z, "hidden_size": H})
    return path



def tiny_preset() -> Preset:
    """``debug`` made smaller still: 3 episodes of 40 steps; C trained without real evaluations
    (``eval_every=0``), so the pipeline evaluates ``controller.pt``."""
    d = get_preset("debug")
    return replace(
        d, name="tiny",
        env=replace(d.env, max_steps=40),
        collect=replace(d.collect, episodes=3, workers=1),
        vae=replace(d.vae, batch_size=16),
        rnn=replace(d.rnn, hidden_size=32, seq_len=16, batch_size=4),
        controller=replace(d.controller, popsize=6, rollouts_per_candidate=1, generations=3,
                           dream_max_steps=40, eval_every=0, workers=1),
        eval=replace(d.eval, episodes=1, workers=1),
    )


DZ, DH, DK = 8, 16, 3


def tiny_mdnrnn(seed: int = 0, done_bias: float = -8.0) -> MDNRNN:
    """A small M with random weights; ``done_bias`` -8 keeps p(done) < 0.02 (never done)."""
    torch.manual_seed(seed)
    m = MDNRNN(z_dim=DZ, action_dim=3, hidden_size=DH, n_gaussians=DK)
    assert m.done_head is not None
    with torch.no_grad():
        m.done_head.bias.fill_(done_bias)
    return m.eval()


def save_tiny_models(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a random tiny V (z=8) and an M trained 'against' it; returns (vae_path, m_path)."""
    torch.manual_seed(seed)
    vae = ConvVAE(z_dim=DZ)
    vae_path = save_checkpoint(folder / "vae.pt", kind="vae", config=asdict(VAEConfig(z_dim=DZ)),
                               model=vae.state_dict())
    m = tiny_mdnrnn(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = MDNRNNConfig(z_dim=DZ, hidden_size=DH, n_gaussians=DK)
    m_path = save_checkpoint(
        folder / "mdnrnn.pt", kind="mdnrnn", config=asdict(cfg), model=m.state_dict(),
        parents={"vae_sha256": checkpoint_sha256(vae_path)},
        extra={"initial_mu": torch.randn(5, DZ, generator=gen),
               "initial_logvar": torch.randn(5, DZ, generator=gen) - 2.0,
               "vae_path": str(vae_path)})
    return vae_path, m_path


def forward_biased_actions(seed: int, steps: int) -> np.ndarray:
    """Random steering, mostly gas, a little brake (steps x 3): the car moves, skids, and
    grass and tiles all get drawn."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform([-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], size=(steps, 3))
    actions[:, 1] = np.clip(actions[:, 1] + 0.3, 0.0, 1.0)
    actions[:, 2] *= 0.2
    return actions.astype(np.float32)
