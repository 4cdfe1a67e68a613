"""V: the convolutional VAE of World Models.

Encoder: four 4x4 stride-2 convolutions (32, 64, 128, 256 channels, ReLU; 64->31->14->6->2),
flattened to 1024, then two linear layers to mu and logvar. Decoder: linear z -> 1024 (no
activation, as in the original), viewed as 1024x1x1, four transposed convolutions (kernels
5, 5, 6, 6, stride 2; 128, 64, 32, 3 channels; ReLU between, sigmoid last; 1->5->13->30->64).
4,348,547 parameters with z = 32.

Loss per frame: summed squared pixel error + KL(q(z|x) || N(0, I)) summed over z, with the
KL floored at ``kl_tolerance * z_dim`` nats ("free bits"): below the floor the KL term gives
no gradient, so the encoder is not pushed to throw away information it already compresses.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class VAEOutput(NamedTuple):
    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class VAELoss(NamedTuple):
    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


class ConvVAE(nn.Module):
    @property
    def model_args(self) -> dict:
        """Constructor arguments: ``ConvVAE(**vae.model_args)`` builds the same shapes."""
        return {"z_dim": self.z_dim}

    def __init__(self, z_dim: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(1024, z_dim)
        self.fc_logvar = nn.Linear(1024, z_dim)
        self.fc_dec = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N x 3 x 64 x 64 floats in [0, 1] -> (mu, logvar), each N x z_dim."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, 64, 64):
            raise ValueError(f"ConvVAE expects N x 3 x 64 x 64 input, got {tuple(x.shape)}")
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: N x z_dim -> N x 3 x 64 x 64 in [0, 1]."""
        return self.decoder(self.fc_dec(z).view(-1, 1024, 1, 1))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """``generator`` draws the reparameterisation noise (seeded, resumable training)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return VAEOutput(self.decode(z), mu, logvar, z)


def vae_loss(out: VAEOutput, x: torch.Tensor, kl_tolerance: float = 0.5) -> VAELoss:
    """Mean over the batch of (summed squared error + max(KL, kl_tolerance * z_dim))."""
    recon = (out.recon - x).pow(2).flatten(1).sum(1).mean()
    kl = -0.5 * (1 + out.logvar - out.mu.pow(2) - out.logvar.exp()).sum(1)
    floor = kl_tolerance * out.mu.shape[1]
    kl_floored = torch.clamp(kl, min=floor).mean()
    return VAELoss(recon + kl_floored, recon, kl.mean())


def frames_to_tensor(frames: torch.Tensor) -> torch.Tensor:
    """N x H x W x 3 uint8 frames -> N x 3 x H x W float32 in [0, 1] (batch-wise, on device)."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(x: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W floats in [0, 1] -> N x H x W x 3 uint8."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


__all__ = ["ConvVAE", "VAEOutput", "VAELoss", "vae_loss", "frames_to_tensor", "load_vae",
           "tensor_to_frames"]


def load_vae(path, device: str | torch.device = "cpu") -> tuple[ConvVAE, dict]:
    """Rebuild V from a ``vae`` checkpoint (its config gives the sizes); eval mode."""
    from .checkpoint import load_checkpoint, load_state

    ckpt = load_checkpoint(path, kind="vae")
    vae = ConvVAE(**(ckpt.get("model_args") or {"z_dim": int(ckpt["config"]["z_dim"])}))
    load_state(vae, ckpt["model"], path)
    return vae.to(device).eval(), ckpt


def decode_frames(vae: ConvVAE, z: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """Latents (T x Z) -> T x 64 x 64 x 3 uint8 frames through V's decoder."""
    device = next(vae.parameters()).device
    out = []
    with torch.inference_mode():
        for part in z.split(chunk):
            out.append(tensor_to_frames(vae.decode(part.to(device))).cpu().numpy())
    return np.concatenate(out)


def reconstruction_grid(vae: ConvVAE, frames: np.ndarray, device: torch.device) -> np.ndarray:
    """Real frames (top row) over their reconstructions decode(mu) (bottom row), HWC uint8."""
    vae.eval()
    x = frames_to_tensor(torch.from_numpy(frames).to(device))
    recon = tensor_to_frames(vae.decode(vae.encode(x)[0])).cpu().numpy()
    vae.train()
    return np.concatenate([np.concatenate(list(frames), axis=1),
                           np.concatenate(list(recon), axis=1)], axis=0)
