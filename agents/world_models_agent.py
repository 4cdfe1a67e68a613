"""The World Models agent: V + M + C acting on real, processed observations.

Each step, for a 64x64x3 uint8 frame:
1. V encodes it to (mu, logvar); z is a sample mu + sigma * eps (the paper) or mu (``use_mu``);
2. C acts on [z, h], h being M's hidden state (zeros at the start of an episode), or on
   [z, h, c] with M's LSTM cell c (a C of ``features`` "zch");
3. M steps on [z, action] and updates h (and predicts the next z, kept for ``play``).

The sampling noise comes from the agent's own torch Generator, re-seeded by ``reset(seed)``,
so an episode depends only on the env seed and the agent seed.

``agent.last`` holds what the last ``act`` saw and did (tensors of batch 1 on the agent's
device): ``mu``, ``logvar``, ``z``, ``h`` (the hidden state C acted on), ``action`` and
``next_z`` (M's prediction of the next z: the mean of the most likely component).
:meth:`WorldModelsAgent.reconstruction` and :meth:`WorldModelsAgent.prediction` decode
them to frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from worldmodels.checkpoint import CheckpointError, check_parent, load_checkpoint, load_state, recorded_parent
from worldmodels.controller import Controller
from worldmodels.mdnrnn import MDNRNN, load_mdnrnn, sample_z
from worldmodels.vae import ConvVAE, frames_to_tensor, load_vae, tensor_to_frames
from worldmodels.worlds import action_bounds, map_controller_output, world_of_action_map


class WorldModelsAgent:
    def __init__(self, vae: ConvVAE, mdnrnn: MDNRNN, controller: Controller,
                 device: str | torch.device = "cpu", use_mu: bool = False, seed: int = 0):
        if not (vae.z_dim == mdnrnn.z_dim == controller.z_dim):
            raise ValueError(f"z sizes differ: V {vae.z_dim}, M {mdnrnn.z_dim}, C {controller.z_dim}")
        if controller.hidden_size != mdnrnn.hidden_size:
            raise ValueError(f"C expects h of size {controller.hidden_size}, "
                             f"M has {mdnrnn.hidden_size} hidden units")
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.mdnrnn = mdnrnn.to(self.device).eval()
        self.controller = controller.to(self.device).eval()
        self.use_mu = use_mu
        # The action space's bounds, for clipping noisy actions.
        self._low, self._high = (torch.from_numpy(b).to(self.device)
                                 for b in action_bounds(world_of_action_map(controller.action_map)))
        self.generator = torch.Generator(device=self.device)
        self.last: dict[str, torch.Tensor] = {}
        # Set by from_checkpoints: the files loaded and C's training config.
        self.sources: dict[str, Path] = {}
        self.controller_config: dict = {}
        self.reset(seed)

    @classmethod
    def from_checkpoints(cls, controller_path: str | os.PathLike,
                         vae_path: str | os.PathLike | None = None,
                         mdnrnn_path: str | os.PathLike | None = None,
                         device: str | torch.device = "cpu", use_mu: bool = False,
                         seed: int = 0) -> "WorldModelsAgent":
        """Load C and the V and M it was trained with (default: the paths C records).

        A V or M whose sha256 differs from the one recorded in C (or an M trained on
        another V) raises CheckpointError.
        """
        controller, ckpt = load_controller(controller_path)
        extra = ckpt.get("extra", {})
        vae_path = _parent_path(vae_path, extra, "vae_path", controller_path)
        mdnrnn_path = _parent_path(mdnrnn_path, extra, "mdnrnn_path", controller_path)
        check_parent(ckpt, "vae_sha256", vae_path)
        check_parent(ckpt, "mdnrnn_sha256", mdnrnn_path)
        vae, _ = load_vae(vae_path)
        mdnrnn, _ = load_mdnrnn(mdnrnn_path, vae_path=vae_path)
        agent = cls(vae, mdnrnn, controller, device=device, use_mu=use_mu, seed=seed)
        agent.sources = {"controller": Path(controller_path), "vae": vae_path, "mdnrnn": mdnrnn_path}
        agent.controller_config = dict(ckpt.get("config", {}))
        return agent

    def set_params(self, params: np.ndarray | torch.Tensor) -> None:
        """Replace C's parameters by a flat vector (the ES's candidate)."""
        self.controller.set_flat(params)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: h = 0; with ``seed``, re-seed the z sampling noise."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.state = self.mdnrnn.initial_state(1, self.device)
        self.last = {}

    @torch.no_grad()
    def act(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """A processed frame (64 x 64 x 3 uint8) -> action float32 (A,): CarRacing's steer,
        gas, brake; Take Cover's -1 / 0 / 1.

        ``noise`` (A,) is added to C's action, which is then clipped to the action space
        (and for Take Cover mapped to -1 / 0 / 1 again); M steps on the action actually taken.
        """
        frame = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device).unsqueeze(0)
        mu, logvar = self.vae.encode(frames_to_tensor(frame))
        z = mu if self.use_mu else ConvVAE.reparameterize(mu, logvar, self.generator)
        h, c = self.state[0][0], self.state[1][0]
        action = self.controller(z, h, c)
        if noise is not None:
            action = (action + torch.as_tensor(noise, dtype=action.dtype, device=self.device)
                      ).clamp(self._low, self._high)
            if self.controller.action_map == "thirds":
                action = map_controller_output(action, "thirds")
        out, _, self.state = self.mdnrnn.step(z, action, self.state)
        self.last = {"mu": mu, "logvar": logvar, "z": z, "h": h, "action": action,
                     "next_z": sample_z(out, tau=0.0)}
        return action[0].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        """z (N x Z) -> frames N x 64 x 64 x 3 uint8."""
        return tensor_to_frames(self.vae.decode(z.to(self.device))).cpu().numpy()

    def reconstruction(self) -> np.ndarray:
        """V's reconstruction of the last frame, from the z C saw (64 x 64 x 3 uint8)."""
        return self.decode(self._last("z"))[0]

    def prediction(self) -> np.ndarray:
        """M's prediction of the next frame, decoded through V (64 x 64 x 3 uint8)."""
        return self.decode(self._last("next_z"))[0]

    def _last(self, key: str) -> torch.Tensor:
        if key not in self.last:
            raise RuntimeError("the agent has not acted since its last reset")
        return self.last[key]


class NoisyAgentPolicy:
    """The agent as a data-collection policy (``worldmodels collect --policy agent``).

    Each step adds N(0, ``noise``^2) to C's action (on the dimensions ``dims``, default all;
    then clips it), so the data also shows what happens near C's choices; ``offset`` (A,), if
    given, is added to every action too (``collect.episode_offset``: one draw per episode, C
    driving a little differently for a whole episode). z-sampling and noise both draw from
    ``rng``.
    """

    def __init__(self, agent: WorldModelsAgent, rng: np.random.Generator, noise: float,
                 dims: tuple[int, ...] | None = None, offset: np.ndarray | None = None):
        self.agent, self.rng, self.noise = agent, rng, float(noise)
        # ``dims``: the action dimensions that get noise (None: all). The draw is the same
        # either way, so the rng's stream (and the z sampling after it) does not change.
        self.mask = None
        if dims is not None:
            self.mask = np.zeros(agent.controller.action_dim)
            self.mask[list(dims)] = 1.0
        self.offset = None if offset is None else np.asarray(offset, dtype=np.float64)

    def reset(self) -> None:
        self.agent.reset(int(self.rng.integers(2**31)))

    def act(self, obs: np.ndarray) -> np.ndarray:
        dim = self.agent.controller.action_dim
        noise = self.rng.normal(0.0, self.noise, dim) if self.noise > 0 else None
        if noise is not None and self.mask is not None:
            noise = noise * self.mask
        if self.offset is not None:
            noise = self.offset if noise is None else noise + self.offset
        return self.agent.act(obs, noise)


def load_controller(path: str | os.PathLike) -> tuple[Controller, dict]:
    """Rebuild C from a ``controller`` checkpoint (sizes from its extra); eval mode."""
    ckpt = load_checkpoint(path, kind="controller")
    extra = ckpt.get("extra", {})
    try:
        args = ckpt.get("model_args") or {  # checkpoints of 0.1.0 kept the sizes in extra
            "z_dim": int(extra["z_dim"]), "hidden_size": int(extra["hidden_size"])}
    except KeyError as e:
        raise CheckpointError(f"{path} records no model_args and no {e.args[0]} in its extra"
                              ) from None
    try:
        controller = Controller(**args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild C from its model_args {args}: {e}") from None
    load_state(controller, ckpt["model"], path)
    return controller.eval(), ckpt


def _parent_path(given, extra: dict, key: str, controller_path) -> Path:
    if given is not None:
        return Path(given)
    found = recorded_parent(extra, key, controller_path)
    if found is None:
        raise CheckpointError(f"{controller_path} records no {key}; pass the path explicitly")
    return found
