"""The dream: M run as an environment for B dreams at once, the hot loop of training C.

A dream starts from a real first frame: one of the initial encodings stored in M's
checkpoint (``extra["initial_mu"]``, ``extra["initial_logvar"]``, N x Z) is picked uniformly
and z_0 = mu + exp(logvar / 2) * eps. Then, every step, with h_0 = c_0 = 0:

    a_t            = the action (given to :meth:`BatchedDream.step`, or C's: map(tanh(W [z_t, h_t] + b)))
    h_t+1, c_t+1   = LSTM([z_t, a_t], (h_t, c_t))
    z_t+1          ~ the mixture on h_t+1 at temperature tau (logits / tau, std * sqrt(tau))
    reward_t       = the reward head on h_t+1: its mean prediction, never sampled (it was
                     trained by MSE, so the head's output is the expected reward); with K reward
                     heads, their mean minus ``reward_penalty`` times their std. With
                     ``reward="survival"`` (Take Cover, whose M has no reward head): 1 for
                     every step a dream is alive, so the return is the steps survived.

``map`` is the world's mapping of C's outputs (``action_map``, see
``worldmodels.worlds.map_controller_output``): CarRacing's (steer, gas, brake), or Take
Cover's thirds (-1, 0, 1), which M was trained on.

Branched dreams (``initial_h`` and ``initial_c`` given, e.g. by :func:`branch_starts`): each
start is a state M was in on real data, mid-episode, (mu, logvar, h, c); a dream continues
from there, so that C is scored where M has seen data, for short horizons (as MBPO and
Dreamer imagine from real states), instead of from the first frame only.

A dream that has terminated is frozen: its z, h and c no longer change, it stays done and
earns no more reward. Episodes are cut at ``max_steps``.

``temperature = 0`` makes everything deterministic except sampled dones: the next z is the mean
of the most likely component, and dream b starts from the mean encoding of initial frame
``b mod N``, whatever the seed.

Speed (this is the hot loop of training C): the LSTM weights are packed into one matrix over
the input buffer [z, h, a] and the MDN, reward and done heads into another, so a step is two
matmuls (about 85% of the time at B = 1024 on CPU) plus in-place elementwise kernels on
preallocated buffers. The temperature is folded into the head's weights. On CPU, torch's
tanh, exp and argmax over a small dimension are slow, so tanh(x) is computed as
2 sigmoid(2x) - 1, the std as exp2 of a base-2 log-std (the head's rows are rescaled), and
the component choice as max + compare + K selects. In :meth:`evaluate` (P controllers x n
rollouts) the noise is drawn once per rollout and broadcast over the controllers: common
random numbers, which also make drawing it nearly free.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .controller import feature_dim
from .mdnrnn import MDNRNN, State, done_from_logit, load_mdnrnn, sample_z
from .vae import ConvVAE, decode_frames, frames_to_tensor
from .worlds import ACTION_MAPS, map_controller_output

LOG2_E = 1.0 / math.log(2.0)


@dataclass
class _Batch:
    """Preallocated buffers of B dreams; ``x`` / ``c`` are double-buffered: [cur, next]."""

    x: list[torch.Tensor]       # 2 x (B x (Z + H + A)): [z, h, a], the LSTM's input
    c: list[torch.Tensor]       # 2 x (B x H): LSTM cell
    gates: torch.Tensor         # B x 4H, gate order i, f, o, g
    heads: torch.Tensor         # B x (3*K*Z + R + 1): logits, means, log2-stds (K x Z each),
    #                             R reward heads, done
    scores: torch.Tensor        # B x K x Z: logits / tau + Gumbel noise
    best: torch.Tensor          # B x 1 x Z: their max over the K components
    pick: torch.Tensor          # B x K x Z (bool): the chosen component
    sel: torch.Tensor           # B x 2 x Z: its mean and log2-std
    hit: torch.Tensor           # B (bool): terminated this step
    done: torch.Tensor          # B (bool): terminated so far
    alive: torch.Tensor         # B (float): 1 - done
    ret: torch.Tensor           # B: return so far
    mask: torch.Tensor | None = None  # n x (Z + H + A): dropout mask of each dream (a part = 1)
    xm: torch.Tensor | None = None    # B x (Z + H + A): the masked LSTM input
    t: int = 0
    any_done: bool = False


class BatchedDream:
    """B independent dreams of M, stepped together in torch (see the module docstring).

    Env-style use: ``z, h = dream.reset(batch, generator)`` then ``z, h, reward, done =
    dream.step(actions)`` (``done``: terminated by M, cumulative; the time limit is
    :attr:`truncated`). Training C: :meth:`evaluate` scores many linear controllers at once.
    """

    def __init__(self, mdnrnn: MDNRNN, initial_mu: torch.Tensor, initial_logvar: torch.Tensor,
                 temperature: float = 1.0, max_steps: int = 1000, done_threshold: float = 0.5,
                 sample_done: bool = False, device: str | torch.device = "cpu",
                 dropout: float = 0.0, reward_penalty: float = 0.0,
                 action_map: str = "carracing", reward: str = "head",
                 initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None,
                 done_logit_offset: float = 0.0, features: str = "zh"):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        if not 0.0 <= reward_penalty < math.inf:
            raise ValueError(f"reward_penalty must be finite and >= 0, got {reward_penalty}")
        self.reward_penalty = float(reward_penalty)
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not 0.0 <= done_threshold <= 1.0:
            raise ValueError(f"done_threshold must be in [0, 1], got {done_threshold}")
        self.device = torch.device(device)
        self.temperature = float(temperature)
        self.max_steps = int(max_steps)
        self.done_threshold = float(done_threshold)
        self.sample_done = bool(sample_done)
        if not math.isfinite(done_logit_offset):
            raise ValueError(f"done_logit_offset must be finite, got {done_logit_offset}")
        self.done_logit_offset = float(done_logit_offset)
        self.z_dim, self.hidden_size = mdnrnn.z_dim, mdnrnn.hidden_size
        self.action_dim, self.n_gaussians = mdnrnn.action_dim, mdnrnn.n_gaussians
        if action_map not in ACTION_MAPS:
            raise ValueError(f"unknown action_map {action_map!r}; choose one of {ACTION_MAPS}")
        if action_map == "carracing" and mdnrnn.action_dim != 3:
            raise ValueError(f"action_map 'carracing' needs an M with 3 action inputs, "
                             f"this one has {mdnrnn.action_dim}")
        if reward not in ("head", "survival"):
            raise ValueError(f"reward must be 'head' or 'survival', got {reward!r}")
        self.action_map, self.reward = action_map, reward
        self.features = features
        self.n_features = feature_dim(self.z_dim, self.hidden_size, features)  # checks the name
        self.has_done = mdnrnn.done_head is not None
        if reward == "survival" and not self.has_done:
            raise ValueError("reward 'survival' counts the steps until M's done head fires; "
                             "this M has no done head")
        self.has_reward = mdnrnn.reward_head is not None or reward == "survival"
        self.reward_heads = (mdnrnn.reward_head.out_features
                             if mdnrnn.reward_head is not None else 1)

        mu = torch.as_tensor(initial_mu, dtype=torch.float32)
        logvar = torch.as_tensor(initial_logvar, dtype=torch.float32)
        if mu.dim() != 2 or mu.shape != logvar.shape or mu.shape[0] == 0 or mu.shape[1] != self.z_dim:
            raise ValueError(f"initial_mu and initial_logvar must both be N x {self.z_dim} "
                             f"with N >= 1, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
        self.initial_mu = mu.to(self.device)
        self.initial_std = logvar.mul(0.5).exp().to(self.device)
        self.initial_h = self.initial_c = None
        if (initial_h is None) != (initial_c is None):
            raise ValueError("give both initial_h and initial_c (branched starts), or neither")
        if initial_h is not None and initial_c is not None:
            hc = [torch.as_tensor(t, dtype=torch.float32) for t in (initial_h, initial_c)]
            if any(t.shape != (mu.shape[0], self.hidden_size) for t in hc):
                raise ValueError(f"initial_h and initial_c must be {mu.shape[0]} x "
                                 f"{self.hidden_size} (one per initial encoding), got "
                                 f"{tuple(hc[0].shape)} and {tuple(hc[1].shape)}")
            self.initial_h, self.initial_c = (t.to(self.device) for t in hc)
        self._pack(mdnrnn)
        # The mapping a = (steer, (gas + 1) / 2, brake) as shift + raw * scale, then brake >= 0.
        self._act_scale = torch.tensor([1.0, 0.5, 1.0], device=self.device)
        self._act_shift = torch.tensor([0.0, 0.5, 0.0], device=self.device)
        self._state: _Batch | None = None
        self._generator: torch.Generator | None = None

    @classmethod
    def from_checkpoint(cls, mdnrnn_path: str | os.PathLike, device: str | torch.device = "cpu",
                        vae_path: str | os.PathLike | None = None,
                        starts: dict[str, torch.Tensor] | None = None, **kw) -> "BatchedDream":
        """The dream of an ``mdnrnn`` checkpoint, started from the initial encodings it stores,
        or from ``starts`` (branched: :func:`branch_starts`' mu, logvar, h and c).

        With ``vae_path``, an M trained against another V is refused (CheckpointError).
        """
        from .checkpoint import CheckpointError

        model, ckpt = load_mdnrnn(mdnrnn_path, device=device, vae_path=vae_path)
        if starts is not None:
            return cls(model, starts["mu"], starts["logvar"], device=device,
                       initial_h=starts["h"], initial_c=starts["c"], **kw)
        extra = ckpt.get("extra", {})
        if "initial_mu" not in extra or "initial_logvar" not in extra:
            raise CheckpointError(f"{mdnrnn_path} stores no initial encodings "
                                  "(extra['initial_mu'/'initial_logvar']); dreams cannot start")
        return cls(model, extra["initial_mu"], extra["initial_logvar"], device=device, **kw)

    # ----------------------------------------------------------------------------- weights

    def _pack(self, m: MDNRNN) -> None:
        Z, H, K = self.z_dim, self.hidden_size, self.n_gaussians
        with torch.no_grad():
            w_ih, w_hh, b_ih, b_hh = (t.detach().float().cpu() for t in m.cell_weights())
            bias = b_ih + b_hh
            # Input columns in the order of the buffer [z, h, a]; gate rows from torch's
            # (i, f, g, o) to (i, f, o, g), so one sigmoid covers three gates and one tanh the last.
            w = torch.cat([w_ih[:, :Z], w_hh, w_ih[:, Z:]], dim=1)
            order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                               torch.arange(2 * H, 3 * H)])
            w, bias = w[order], bias[order]
            # tanh(x) = 2 sigmoid(2x) - 1, and torch's sigmoid is several times faster than its
            # tanh on CPU: the g gate's pre-activation is doubled here, so that a single
            # sigmoid covers all four gates.
            w[3 * H:] *= 2
            bias[3 * H:] *= 2
            self._w_lstm = w.t().contiguous().to(self.device)
            self._b_lstm = bias.to(self.device)

            # MDN head rows are laid out (Z, 3, K): log-weight, mean, log-std. Reorder them as
            # (3, K, Z), so that each component's values over z are contiguous, then append the
            # reward and done rows.
            wm = m.mdn.weight.detach().float().cpu().view(Z, 3, K, H).permute(1, 2, 0, 3).clone()
            bm = m.mdn.bias.detach().float().cpu().view(Z, 3, K).permute(1, 2, 0).clone()
            tau = self.temperature
            if tau > 0:  # logits / tau and std * sqrt(tau), folded into the weights once
                wm[0] /= tau
                bm[0] /= tau
                bm[2] += 0.5 * math.log(tau)
            wm[2] *= LOG2_E  # log-stds in base 2: std = exp2(row), cheaper than exp on CPU
            bm[2] *= LOG2_E
            rows_w, rows_b = [wm.reshape(3 * K * Z, H)], [bm.reshape(3 * K * Z)]
            for head in (m.reward_head, m.done_head):
                if head is None:  # absent head: a zero row (reward 0; done is never computed)
                    rows_w.append(torch.zeros(1, H))
                    rows_b.append(torch.zeros(1))
                else:
                    rows_w.append(head.weight.detach().float().cpu())
                    rows_b.append(head.bias.detach().float().cpu())
            if m.done_head is not None:  # the done row is the last: shift its logit once here
                rows_b[-1] = rows_b[-1] + self.done_logit_offset
            self._w_heads = torch.cat(rows_w).t().contiguous().to(self.device)
            self._b_heads = torch.cat(rows_b).to(self.device)
        thr = self.done_threshold
        self._done_logit_threshold = math.log(thr / (1 - thr)) if 0 < thr < 1 else (
            -math.inf if thr == 0 else math.inf)

    @property
    def n_params(self) -> int:
        """Size of a flat controller parameter vector for :meth:`evaluate`."""
        return self.n_features * self.action_dim + self.action_dim

    # ----------------------------------------------------------------------------- the step

    def _new_batch(self, batch: int, z0: torch.Tensor, mask: torch.Tensor | None = None,
                   h0: torch.Tensor | None = None, c0: torch.Tensor | None = None) -> _Batch:
        Z, H, A, K = self.z_dim, self.hidden_size, self.action_dim, self.n_gaussians
        dev = self.device
        x = [torch.zeros(batch, Z + H + A, device=dev) for _ in range(2)]
        x[0][:, :Z] = z0
        c = [torch.zeros(batch, H, device=dev) for _ in range(2)]
        if h0 is not None and c0 is not None:  # branched starts: M's state on real data
            x[0][:, Z:Z + H] = h0
            c[0].copy_(c0)
        return _Batch(
            mask=mask, xm=None if mask is None else torch.empty(batch, Z + H + A, device=dev),
            x=x, c=c,
            gates=torch.empty(batch, 4 * H, device=dev),
            heads=torch.empty(batch, self._w_heads.shape[1], device=dev),
            scores=torch.empty(batch, K, Z, device=dev),
            best=torch.empty(batch, 1, Z, device=dev),
            pick=torch.empty(batch, K, Z, dtype=torch.bool, device=dev),
            sel=torch.empty(batch, 2, Z, device=dev),
            hit=torch.zeros(batch, dtype=torch.bool, device=dev),
            done=torch.zeros(batch, dtype=torch.bool, device=dev),
            alive=torch.ones(batch, device=dev),
            ret=torch.zeros(batch, device=dev),
        )

    def _initial_state(self, n: int, generator: torch.Generator | None
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(z_0, h_0, c_0) of n dreams: a random start, its z sampled (tau = 0: the mean of
        start b mod N); h_0 and c_0 are None (zeros) unless the starts are branched."""
        n_init = self.initial_mu.shape[0]
        if self.temperature == 0:
            idx = torch.arange(n, device=self.device) % n_init
            z0 = self.initial_mu[idx]
        else:
            idx = torch.randint(n_init, (n,), generator=generator, device=self.device)
            eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
            z0 = torch.addcmul(self.initial_mu[idx], self.initial_std[idx], eps)
        if self.initial_h is None or self.initial_c is None:
            return z0, None, None
        return z0, self.initial_h[idx], self.initial_c[idx]

    def _dropout_mask(self, n: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """Dropout's Dream Land: each of n dreams gets one mask on the LSTM's inputs z and h,
        fixed for its whole episode (entries 0 or 1 / (1 - p); the action is never dropped)."""
        if self.dropout == 0:
            return None
        Z, H, A = self.z_dim, self.hidden_size, self.action_dim
        keep = 1.0 - self.dropout
        mask = torch.ones(n, Z + H + A, device=self.device)
        u = torch.rand(n, Z + H, generator=generator, device=self.device)
        mask[:, :Z + H] = (u < keep).float() / keep
        return mask

    def _noise(self, n: int, generator: torch.Generator | None):
        """One step's noise for n streams: Gumbel (n x K x Z), eps (n x Z), done threshold."""
        gumbel = eps = None
        if self.temperature > 0:
            # Gumbel(0, 1) = -log(-log(U)): argmax(logits / tau + G) samples softmax(logits / tau).
            gumbel = torch.rand(n, self.n_gaussians, self.z_dim, generator=generator,
                                device=self.device).log_().neg_().log_().neg_()
            eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        if self.has_done and self.sample_done:
            # u < sigmoid(logit)  <=>  logit > log(u / (1 - u)).
            u = torch.rand(n, generator=generator, device=self.device)
            thr: torch.Tensor | float = torch.logit(u)
        else:
            thr = self._done_logit_threshold
        return gumbel, eps, thr

    def _advance(self, s: _Batch, groups: int, noise) -> None:
        """One step of every dream in ``s`` from its action already in the input buffer.

        The B dreams are ``groups`` x n; noise tensors have n streams and are broadcast
        over the groups (groups = 1 in env-style use, P controllers in :meth:`evaluate`).
        """
        Z, H, K = self.z_dim, self.hidden_size, self.n_gaussians
        gumbel, eps, thr = noise
        x, x_next = s.x
        c, c_next = s.c
        B = x.shape[0]
        n = B // groups

        if s.mask is not None:  # one mask per dream, broadcast over the groups
            assert s.xm is not None
            torch.mul(x.view(groups, n, -1), s.mask, out=s.xm.view(groups, n, -1))
            torch.addmm(self._b_lstm, s.xm, self._w_lstm, out=s.gates)
        else:
            torch.addmm(self._b_lstm, x, self._w_lstm, out=s.gates)
        s.gates.sigmoid_()
        i, f, o, g = s.gates[:, :H], s.gates[:, H:2 * H], s.gates[:, 2 * H:3 * H], s.gates[:, 3 * H:]
        g.mul_(2).sub_(1)                       # tanh of the g gate (doubled in the weights)
        torch.mul(f, c, out=c_next)
        c_next.addcmul_(i, g)
        h_next = x_next[:, Z:Z + H]
        torch.mul(c_next, 2, out=h_next).sigmoid_().mul_(2).sub_(1).mul_(o)  # o * tanh(c)

        heads = torch.addmm(self._b_heads, h_next, self._w_heads, out=s.heads)
        mdn = heads[:, :3 * K * Z].view(B, 3, K, Z)
        z_next = x_next[:, :Z]
        if gumbel is None:  # tau = 0: the mean of the most likely component
            self._select(s, mdn[:, 0], mdn)
            z_next.copy_(s.sel[:, 0])
        else:
            torch.add(mdn[:, 0].view(groups, n, K, Z), gumbel, out=s.scores.view(groups, n, K, Z))
            self._select(s, s.scores, mdn)
            sigma = s.sel[:, 1].exp2_()
            torch.addcmul(s.sel[:, 0].view(groups, n, Z), sigma.view(groups, n, Z), eps,
                          out=z_next.view(groups, n, Z))

        s.ret.addcmul_(self._reward(heads), s.alive)
        if s.any_done:  # terminated dreams keep their state
            done = s.done.unsqueeze(1)
            torch.where(done, x[:, :Z + H], x_next[:, :Z + H], out=x_next[:, :Z + H])
            torch.where(done, c, c_next, out=c_next)
        if self.has_done:
            thr_b = thr if isinstance(thr, float) else thr.expand(groups, n)
            torch.gt(heads[:, -1].view(groups, n), thr_b, out=s.hit.view(groups, n))
            s.done |= s.hit
            torch.logical_not(s.done, out=s.alive)  # bool -> float 0/1
            # One host sync per step on CPU (cheap there); on a GPU always take the masked path.
            s.any_done = bool(s.done.any()) if self.device.type == "cpu" else True
        s.x.reverse()
        s.c.reverse()
        s.t += 1

    def _reward(self, heads: torch.Tensor) -> torch.Tensor:
        """The reward of each dream: its single head, or over K heads their mean minus
        ``reward_penalty`` times their std (disagreement marks what M has not seen)."""
        r0 = 3 * self.n_gaussians * self.z_dim
        if self.reward == "survival":
            return torch.ones_like(heads[:, r0])
        if self.reward_heads == 1:
            return heads[:, r0]
        r = heads[:, r0:r0 + self.reward_heads]
        if self.reward_penalty == 0:
            return r.mean(1)
        std, mean = torch.std_mean(r, dim=1, correction=0)
        return mean - self.reward_penalty * std

    def _select(self, s: _Batch, scores: torch.Tensor, mdn: torch.Tensor) -> None:
        """s.sel = mean and log2-std of the component with the highest score, per dim.

        Same as argmax + gather (the first maximum wins a tie), but torch's argmax over a
        dimension of size K is slow on CPU; a max, a comparison and K selects are not.
        """
        K = self.n_gaussians
        torch.amax(scores, 1, keepdim=True, out=s.best)
        torch.eq(scores, s.best, out=s.pick)
        s.sel.copy_(mdn[:, 1:, K - 1])
        for k in range(K - 2, -1, -1):
            torch.where(s.pick[:, k:k + 1], mdn[:, 1:, k], s.sel, out=s.sel)

    def _act_controllers(self, s: _Batch, w: torch.Tensor, b: torch.Tensor, raw: torch.Tensor) -> None:
        """Actions of P linear controllers (w P x A x F, b P x 1 x A) for P x n dreams; F is
        Z + H ([z, h]) or Z + 2H ([z, h, c], ``features`` "zch")."""
        Z, H = self.z_dim, self.hidden_size
        x = s.x[0]
        P, n, A = raw.shape
        torch.baddbmm(b, x[:, :Z + H].view(P, n, Z + H), w[:, :, :Z + H].transpose(1, 2), out=raw)
        if self.features == "zch":
            raw.baddbmm_(s.c[0].view(P, n, H), w[:, :, Z + H:].transpose(1, 2))
        raw.tanh_()
        a = x[:, Z + H:]
        if self.action_map == "thirds":  # -1 below -1/3, 1 above 1/3, else 0
            a.view(P, n, A).copy_(map_controller_output(raw, "thirds"))
            return
        torch.addcmul(self._act_shift, raw, self._act_scale, out=a.view(P, n, A))
        a[:, 2].clamp_(min=0.0)

    # ----------------------------------------------------------------------------- env-style API

    def _to_generator(self, generator: torch.Generator | int | None) -> torch.Generator:
        if isinstance(generator, torch.Generator):
            return generator
        seed = int(generator) if generator is not None else int(torch.randint(2**62, ()).item())
        return torch.Generator(device=self.device).manual_seed(seed)

    def reset(self, batch: int, generator: torch.Generator | int | None = None,
              z: torch.Tensor | np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Start ``batch`` dreams; returns (z B x Z, h B x H) (copies).

        ``generator`` (a torch.Generator on the dream's device, or an int seed) draws every
        random number of these dreams until the next reset. ``z`` (B x Z) starts them from
        given latents (e.g. an encoded real frame) instead of the stored initial encodings.
        """
        self._generator = self._to_generator(generator)
        with torch.inference_mode():
            h0 = c0 = None
            if z is None:
                z0, h0, c0 = self._initial_state(batch, self._generator)
            else:
                z0 = torch.as_tensor(z, dtype=torch.float32, device=self.device)
                if z0.shape != (batch, self.z_dim):
                    raise ValueError(f"z must be {batch} x {self.z_dim}, got {tuple(z0.shape)}")
            self._state = self._new_batch(batch, z0, self._dropout_mask(batch, self._generator),
                                          h0, c0)
        return self.z, self.h

    def step(self, action: torch.Tensor | np.ndarray
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every dream by one step with ``action`` (B x A).

        Returns (z B x Z, h B x H, reward B, done B bool), copies. ``done`` is the cumulative
        terminated flag from M; a done dream's z and h stay frozen and its reward is 0.
        """
        s = self._state
        if s is None:
            raise RuntimeError("call reset() before step()")
        if s.t >= self.max_steps:
            raise RuntimeError(f"the dreams reached max_steps={self.max_steps}; call reset()")
        B = s.x[0].shape[0]
        with torch.inference_mode():
            action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
            if action.shape != (B, self.action_dim):
                raise ValueError(f"action must be {B} x {self.action_dim}, got {tuple(action.shape)}")
            s.x[0][:, self.z_dim + self.hidden_size:] = action
            alive = s.alive.clone()
            self._advance(s, 1, self._noise(B, self._generator))
            reward = self._reward(s.heads) * alive
        return self.z, self.h, reward.clone(), s.done.clone()

    def _current(self) -> _Batch:
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    @property
    def z(self) -> torch.Tensor:
        """Current z of every dream (B x Z, a copy)."""
        return self._current().x[0][:, :self.z_dim].clone()

    @property
    def h(self) -> torch.Tensor:
        """Current LSTM output h of every dream (B x H, a copy)."""
        return self._current().x[0][:, self.z_dim:self.z_dim + self.hidden_size].clone()

    @property
    def c(self) -> torch.Tensor:
        """Current LSTM cell c of every dream (B x H, a copy): what a C of ``features`` "zch"
        reads besides z and h."""
        return self._current().c[0].clone()

    @property
    def t(self) -> int:
        """Steps taken since reset."""
        return self._current().t

    @property
    def truncated(self) -> bool:
        """The dreams reached ``max_steps``."""
        return self._current().t >= self.max_steps

    # ----------------------------------------------------------------------------- training C

    def evaluate(self, params: torch.Tensor | np.ndarray, n_rollouts: int, seed: int) -> torch.Tensor:
        """Dream returns of P linear controllers: params P x n_params -> P x n_rollouts (CPU).

        Controller p acts as ``map(tanh(W_p [z, h] + b_p))`` (``action_map``; [z, h, c] for
        ``features`` "zch"; layout of
        ``worldmodels.controller.unflatten``). All P * n_rollouts dreams run together for up
        to ``max_steps`` steps. Common random numbers: the noise of rollout r (its start, its
        components, its Gaussian noise, its sampled dones) depends only on (seed, r, t), so
        every controller meets the same n_rollouts dreams and evaluating controllers one by
        one gives the same returns as evaluating them together.
        """
        params = torch.as_tensor(params, dtype=torch.float32).to(self.device)
        if params.dim() == 1:
            params = params.unsqueeze(0)
        if params.dim() != 2 or params.shape[1] != self.n_params:
            raise ValueError(f"params must be P x {self.n_params}, got {tuple(params.shape)}")
        if not self.has_reward:
            raise ValueError("this M has no reward head, so controllers cannot be scored in its dream")
        if n_rollouts < 1:
            raise ValueError(f"n_rollouts must be >= 1, got {n_rollouts}")
        P, n, A, F = params.shape[0], int(n_rollouts), self.action_dim, self.n_features
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        with torch.inference_mode():
            w = params[:, :F * A].reshape(P, A, F)
            b = params[:, F * A:].reshape(P, 1, A)
            raw = torch.empty(P, n, A, device=self.device)
            z0, h0, c0 = self._initial_state(n, gen)
            s = self._new_batch(P * n, z0.repeat(P, 1), self._dropout_mask(n, gen),
                                None if h0 is None else h0.repeat(P, 1),
                                None if c0 is None else c0.repeat(P, 1))
            check_every = 1 if self.device.type == "cpu" else 50
            for t in range(self.max_steps):
                self._act_controllers(s, w, b, raw)
                self._advance(s, P, self._noise(n, gen))
                if self.has_done and (t + 1) % check_every == 0 and bool(s.done.all()):
                    break
        # Cloned outside inference mode: callers get an ordinary tensor.
        return s.ret.view(P, n).cpu().clone()


class DreamStep(NamedTuple):
    """What :func:`reference_dream` returns: one step of B dreams."""

    z: torch.Tensor                 # B x Z, z_t+1 sampled from the mixture
    h: torch.Tensor                 # B x H, M's LSTM output h_t+1
    state: State                    # (h, c) to give the next step
    reward: torch.Tensor | None     # B, reward_t (None: M has no reward head)
    done: torch.Tensor | None       # B bool, terminated this step (None: no done head)


def dream_kwargs(cfg, world, **override) -> dict:
    """The settings of the dream C was trained in, as :class:`BatchedDream`'s keyword arguments.

    ``cfg``: a :class:`~worldmodels.config.ControllerConfig`, or its dict as a C checkpoint
    stores it (keys it lacks, from older checkpoints, take the config's defaults); ``world``:
    a :class:`~worldmodels.worlds.World` (its action map and dream reward); ``override``:
    settings to replace (e.g. ``temperature=tau``, ``max_steps=10**9`` for a figure).
    Training, figures and experiment scripts build C's dream with this one function.
    """
    from dataclasses import asdict

    from .config import ControllerConfig

    given = cfg if isinstance(cfg, dict) else asdict(cfg)
    c = {**asdict(ControllerConfig()), **given}
    kw = dict(temperature=float(c["temperature"]), max_steps=int(c["dream_max_steps"]),
              done_threshold=float(c["done_threshold"]), sample_done=bool(c["sample_done"]),
              dropout=float(c["dream_dropout"]), reward_penalty=float(c["reward_penalty"]),
              action_map=world.action_map, reward=world.dream_reward,
              done_logit_offset=float(c["done_logit_offset"]), features=str(c["features"]))
    unknown = set(override) - set(kw)
    if unknown:
        raise TypeError(f"dream_kwargs: unknown setting(s) {sorted(unknown)}; "
                        f"known: {sorted(kw)}")
    return {**kw, **override}


def reference_dream(mdnrnn: MDNRNN, z: torch.Tensor, action: torch.Tensor, state: State,
                    temperature: float = 1.0, generator: torch.Generator | None = None,
                    done_threshold: float = 0.5, reward_penalty: float = 0.0,
                    mask: torch.Tensor | None = None) -> DreamStep:
    """One dream step written straight from M's definition (the module docstring), with none
    of :class:`BatchedDream`'s speed-ups: the oracle its tests compare it with and the
    baseline ``worldmodels bench`` times it against.

    Each of the B rows is a dream on its own (no common random numbers, no freezing of
    finished dreams: the caller keeps them). ``state`` starts as ``mdnrnn.initial_state(B)``;
    ``mask`` (B x (Z + H + A), BatchedDream's dropout masks) scales z and h before the LSTM.
    """
    h0, c0 = state
    if mask is not None:
        Z, H = mdnrnn.z_dim, mdnrnn.hidden_size
        z, h0 = z * mask[:, :Z], h0 * mask[:, Z:Z + H]
    out, h, state = mdnrnn.step(z, action, (h0, c0))
    reward = out.reward
    if reward is not None and mdnrnn.reward_heads > 1:  # the ensemble's mean, less its doubt
        std, mean = torch.std_mean(reward, dim=-1, correction=0)
        reward = mean - reward_penalty * std
    done = None if out.done_logit is None else done_from_logit(out.done_logit, done_threshold)
    return DreamStep(sample_z(out, temperature, generator), h, state, reward, done)


def branch_starts(mdnrnn: MDNRNN, latent_dirs, n: int, seed: int = 0,
                  max_episodes: int = 200) -> dict[str, torch.Tensor]:
    """``n`` dream starts from real data: M's state mid-episode (``mu``, ``logvar``, ``h``,
    ``c``; each N x ...), for :class:`BatchedDream`'s ``initial_h`` / ``initial_c``.

    From the last ``max_episodes`` episodes of the latent folders (the newest data: the
    agent's own driving in ``iterate``), M reads each episode with teacher forcing (z = mu,
    the actions taken) and the state before step t is kept at ``n`` positions t drawn
    uniformly over those episodes' steps (a fixed ``seed``). The dream then starts from
    z ~ N(mu_t, exp(logvar_t)) with M's (h_t, c_t).
    """
    from .data import episode_files, load_episodes

    files = [f for d in latent_dirs for f in episode_files(d, kind="latent")][-max_episodes:]
    episodes = load_episodes(files, kind="latent", keys=("mu", "logvar", "action"))
    if not episodes:
        raise ValueError(f"no episodes in {list(map(str, latent_dirs))} to branch dreams from")
    lengths = np.array([len(ep["mu"]) for ep in episodes])
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(int(lengths.sum()), size=n, replace=n > lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    which = np.searchsorted(offsets, flat, side="right") - 1
    t_of = flat - offsets[which]
    w_ih, w_hh, b_ih, b_hh = (t.detach().float().cpu() for t in mdnrnn.cell_weights())
    H = mdnrnn.hidden_size
    out = {k: torch.empty(n, d) for k, d in (("mu", mdnrnn.z_dim), ("logvar", mdnrnn.z_dim),
                                             ("h", H), ("c", H))}
    with torch.no_grad():
        for e, ep in enumerate(episodes):
            picks = np.flatnonzero(which == e)
            if len(picks) == 0:
                continue
            mu = torch.from_numpy(ep["mu"].astype(np.float32))
            x = torch.cat([mu, torch.from_numpy(ep["action"].astype(np.float32))], 1)
            gates_in = x @ w_ih.t() + b_ih + b_hh      # T x 4H, the input part of every step
            h, c = torch.zeros(H), torch.zeros(H)
            want = {int(t): [int(p) for p in picks[t_of[picks] == t]] for t in set(t_of[picks])}
            for t in range(int(max(want)) + 1):
                for p in want.get(t, ()):              # the state before step t
                    out["h"][p], out["c"][p] = h, c
                    out["mu"][p] = mu[t]
                    out["logvar"][p] = torch.from_numpy(ep["logvar"][t].astype(np.float32))
                i, f, g, o = (gates_in[t] + w_hh @ h).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
    return out


def predict_open_loop(vae: ConvVAE, dream: BatchedDream, real: np.ndarray, actions: np.ndarray,
                      steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """M's open-loop prediction of a real episode, decoded through V.

    From V's mean encoding of ``real[0]``, M steps with the episode's own ``actions[:steps]``
    (never seeing another real frame). Returns the real frames ``real[:steps + 1]``, the
    predicted frames (same shape; frame 0 is V's reconstruction of the start) and the mean
    absolute pixel error of each predicted frame (in [0, 1]). ``dream`` should not end
    episodes (``done_threshold=1.0``), so that it follows the real episode to its end.
    """
    device = next(vae.parameters()).device
    with torch.inference_mode():
        mu, _ = vae.encode(frames_to_tensor(torch.from_numpy(real[:1]).to(device)))
    z, _ = dream.reset(1, seed, z=mu)
    zs = [z[0]]
    for t in range(steps):
        z, *_ = dream.step(actions[t:t + 1])
        zs.append(z[0])
    pred = decode_frames(vae, torch.stack(zs))
    real = real[:steps + 1]
    err = [float(np.mean(np.abs(r.astype(np.float32) - p.astype(np.float32))) / 255)
           for r, p in zip(real, pred)]
    return real, pred, err
