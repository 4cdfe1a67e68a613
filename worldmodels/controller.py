"""C: the linear controller a = tanh(W [z, h] + b) and the paper's action mapping.

867 parameters for z=32, h=256 (3 x 288 weights + 3 biases). With ``features="zch"`` C also
reads M's LSTM cell c: a = tanh(W [z, h, c] + b), as the paper's Doom C (z, c and h).
The flat parameter vector used by CMA-ES is ``[W.flatten() (row-major, 3 x in), b]``, the
order of ``nn.Linear``'s parameters.

Action mapping (``worldmodels.worlds.map_controller_output``): CarRacing steer = a0,
gas = (a1 + 1) / 2, brake = clip(a2, 0, 1); Take Cover's single output -> left / stay /
right by thirds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .worlds import ACTION_MAPS, map_controller_output


def n_params(in_dim: int, out_dim: int = 3) -> int:
    return in_dim * out_dim + out_dim


def map_action(raw: torch.Tensor) -> torch.Tensor:
    """tanh outputs in [-1, 1]^3 (... x 3) -> CarRacing actions (steer, gas, brake)."""
    return map_controller_output(raw, "carracing")


FEATURES = ("zh", "zch")
"""What C reads: [z, h], or [z, h, c] with M's LSTM cell c (``ControllerConfig.features``)."""


def feature_dim(z_dim: int, hidden_size: int, features: str = "zh") -> int:
    """Width of C's input: z_dim + hidden_size ([z, h]), plus hidden_size more for c."""
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; choose one of {FEATURES}")
    return z_dim + hidden_size * (2 if features == "zch" else 1)


class Controller(nn.Module):
    def __init__(self, z_dim: int = 32, hidden_size: int = 256, action_dim: int = 3,
                 action_map: str = "carracing", features: str = "zh"):
        super().__init__()
        if action_map not in ACTION_MAPS:
            raise ValueError(f"unknown action_map {action_map!r}; choose one of {ACTION_MAPS}")
        in_dim = feature_dim(z_dim, hidden_size, features)
        if action_map == "carracing" and action_dim != 3:
            raise ValueError(f"action_map 'carracing' maps 3 outputs, got action_dim {action_dim}")
        self.z_dim, self.hidden_size, self.action_dim = z_dim, hidden_size, action_dim
        self.action_map, self.features, self.in_dim = action_map, features, in_dim
        self.fc = nn.Linear(in_dim, action_dim)

    @property
    def model_args(self) -> dict:
        """Constructor arguments: ``Controller(**c.model_args)`` builds the same shapes."""
        return {"z_dim": self.z_dim, "hidden_size": self.hidden_size,
                "action_dim": self.action_dim, "action_map": self.action_map,
                "features": self.features}

    @property
    def n_params(self) -> int:
        return n_params(self.in_dim, self.action_dim)

    def forward(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None
                ) -> torch.Tensor:
        """[z, h] (or [z, h, c], ``features="zch"``; c is M's LSTM cell) -> the mapped
        action (... x action_dim)."""
        parts = [z, h]
        if self.features == "zch":
            if c is None:
                raise ValueError("this C reads M's LSTM cell c (features 'zch'); pass c")
            parts.append(c)
        return map_controller_output(torch.tanh(self.fc(torch.cat(parts, dim=-1))),
                                     self.action_map)

    def get_flat(self) -> np.ndarray:
        return torch.cat([self.fc.weight.detach().flatten(), self.fc.bias.detach()]).cpu().numpy()

    def set_flat(self, params: np.ndarray | torch.Tensor) -> None:
        params = torch.as_tensor(np.asarray(params), dtype=self.fc.weight.dtype)
        if params.shape != (self.n_params,):
            raise ValueError(f"controller expects {self.n_params} parameters, got {tuple(params.shape)}")
        w, b = unflatten(params, self.in_dim, self.action_dim)
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)


def unflatten(params: torch.Tensor, in_dim: int, out_dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat vectors (... x n_params) -> weights (... x out x in) and biases (... x out)."""
    n_w = in_dim * out_dim
    w = params[..., :n_w].reshape(*params.shape[:-1], out_dim, in_dim)
    return w, params[..., n_w:]


def act_batched(w: torch.Tensor, b: torch.Tensor, features: torch.Tensor,
                action_map: str = "carracing") -> torch.Tensor:
    """Many controllers at once: w B x out x in, b B x out, features B x in -> actions B x out."""
    raw = torch.baddbmm(b.unsqueeze(-1), w, features.unsqueeze(-1)).squeeze(-1)
    return map_controller_output(torch.tanh(raw), action_map)
