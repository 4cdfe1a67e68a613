"""M: the MDN-RNN, p(z_{t+1}, reward_t, done_t | z_t, a_t, h_t).

An LSTM on [z_t, a_t] and, on its output h_t:
- a mixture-density head over z_{t+1}: for each latent dimension independently, ``K``
  Gaussians with log mixture weight, mean and log std (``Linear(hidden, z_dim * K * 3)``);
- a reward head (a scalar, trained by MSE) and a done head (a logit, trained by weighted
  binary cross-entropy), needed to train C inside the dream.

With z=32, 3 actions, 256 hidden units and K=5 the LSTM + MDN head have 423,392 parameters
(the original CarRacing M); the reward and done heads add 257 each.

Temperature tau when sampling: mixture logits / tau, Gaussian std * sqrt(tau). As tau -> 0
the sample collapses to the mean of the most likely component.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

State = tuple[torch.Tensor, torch.Tensor]


class MDNOutput(NamedTuple):
    logpi: torch.Tensor      # ... x Z x K, log mixture weights (log-softmaxed over K)
    mu: torch.Tensor         # ... x Z x K
    logsigma: torch.Tensor   # ... x Z x K
    reward: torch.Tensor | None   # ...
    done_logit: torch.Tensor | None  # ...


class MDNRNN(nn.Module):
    def __init__(self, z_dim: int = 32, action_dim: int = 3, hidden_size: int = 256,
                 n_gaussians: int = 5, predict_reward: bool = True, predict_done: bool = True,
                 dropout: float = 0.0, reward_heads: int = 1):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        if reward_heads < 1:
            raise ValueError(f"reward_heads must be >= 1, got {reward_heads}")
        self.reward_heads = int(reward_heads)
        self.z_dim, self.action_dim = z_dim, action_dim
        self.hidden_size, self.n_gaussians = hidden_size, n_gaussians
        self.lstm = nn.LSTM(z_dim + action_dim, hidden_size, batch_first=True)
        self.mdn = nn.Linear(hidden_size, z_dim * n_gaussians * 3)
        # K > 1 reward heads: an ensemble, each trained on its own half of the sequences,
        # whose disagreement the dream can charge for (``reward_penalty``).
        self.reward_head = nn.Linear(hidden_size, reward_heads) if predict_reward else None
        self.done_head = nn.Linear(hidden_size, 1) if predict_done else None

    @property
    def model_args(self) -> dict:
        """Constructor arguments: ``MDNRNN(**m.model_args)`` builds the same shapes."""
        return {"z_dim": self.z_dim, "action_dim": self.action_dim,
                "hidden_size": self.hidden_size, "n_gaussians": self.n_gaussians,
                "predict_reward": self.reward_head is not None,
                "predict_done": self.done_head is not None, "dropout": self.dropout,
                "reward_heads": self.reward_heads}

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        device = device or self.mdn.weight.device
        zeros = torch.zeros(1, batch, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def heads(self, h: torch.Tensor) -> MDNOutput:
        """Apply the output heads to LSTM outputs h (... x hidden)."""
        out = self.mdn(h).view(*h.shape[:-1], self.z_dim, 3, self.n_gaussians)
        logpi = F.log_softmax(out[..., 0, :], dim=-1)
        mu = out[..., 1, :]
        logsigma = out[..., 2, :]
        reward = None
        if self.reward_head is not None:
            reward = self.reward_head(h)  # ... x K, or ... for a single head
            reward = reward.squeeze(-1) if self.reward_heads == 1 else reward
        done = self.done_head(h).squeeze(-1) if self.done_head is not None else None
        return MDNOutput(logpi, mu, logsigma, reward, done)

    def forward(self, z: torch.Tensor, action: torch.Tensor,
                state: State | None = None) -> tuple[MDNOutput, State]:
        """z: B x T x Z, action: B x T x A -> outputs for each step, final LSTM state."""
        if z.shape[-1] != self.z_dim or action.shape[-1] != self.action_dim:
            raise ValueError(f"MDNRNN expects z[..., {self.z_dim}] and action[..., "
                             f"{self.action_dim}], got {tuple(z.shape)} and {tuple(action.shape)}")
        if self.training and self.dropout > 0:
            return self._forward_dropout(z, action, state)
        h, state = self.lstm(torch.cat([z, action], dim=-1), state)
        return self.heads(h), state

    def _forward_dropout(self, z: torch.Tensor, action: torch.Tensor,
                         state: State | None) -> tuple[MDNOutput, State]:
        """Training with Dropout's Dream Land masks: each sequence drops entries of its z and
        h inputs to the LSTM with one mask for all its steps (scaled by 1 / (1 - p)), as the
        dream does per episode. Runs the cell step by step (the fused LSTM cannot mask h)."""
        B, T, Z = z.shape
        keep = 1.0 - self.dropout
        mz = (torch.rand(B, 1, Z, device=z.device) < keep).to(z.dtype) / keep
        mh = (torch.rand(B, self.hidden_size, device=z.device) < keep).to(z.dtype) / keep
        x = torch.cat([z * mz, action], dim=-1)
        if state is None:
            state = self.initial_state(B, z.device)
        h, c = state[0][0], state[1][0]
        w_ih, w_hh, b_ih, b_hh = self.cell_weights()
        outs = []
        for t in range(T):
            h, c = torch.lstm_cell(x[:, t], (h * mh, c), w_ih, w_hh, b_ih, b_hh)
            outs.append(h)
        return self.heads(torch.stack(outs, 1)), (h.unsqueeze(0), c.unsqueeze(0))

    def step(self, z: torch.Tensor, action: torch.Tensor,
             state: State) -> tuple[MDNOutput, torch.Tensor, State]:
        """One step for a batch: z B x Z, action B x A -> (outputs, h B x hidden, new state).

        Uses the LSTM's weights through a single fused cell (as ``nn.LSTMCell`` would), which
        is much cheaper than running ``nn.LSTM`` on sequences of length one.
        """
        h0, c0 = state
        x = torch.cat([z, action], dim=-1)
        h, c = torch.lstm_cell(x, (h0[0], c0[0]), *self.cell_weights())
        return self.heads(h), h, (h.unsqueeze(0), c.unsqueeze(0))

    def cell_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LSTM's (w_ih, w_hh, b_ih, b_hh), for stepping it as a single cell."""
        lstm = self.lstm
        return (lstm.weight_ih_l0, lstm.weight_hh_l0,  # type: ignore[return-value]
                lstm.bias_ih_l0, lstm.bias_hh_l0)


def gmm_nll(z_next: torch.Tensor, out: MDNOutput, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of z_next under the mixture, averaged per latent dimension.

    z_next: ... x Z; mask: ... (1 for steps that count). Per step the NLL is
    ``-sum_d log sum_k pi_dk N(z_d; mu_dk, sigma_dk)`` divided by Z (the scale of the
    original code), then averaged over the unmasked steps.
    """
    z = z_next.unsqueeze(-1)
    log_normal = -0.5 * ((z - out.mu) * torch.exp(-out.logsigma)).pow(2) - out.logsigma - LOG_SQRT_2PI
    log_prob = torch.logsumexp(out.logpi + log_normal, dim=-1)   # ... x Z
    nll = -log_prob.mean(-1)                                     # ...
    return masked_mean(nll, mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of x over the steps where mask is true (0 if there are none).

    Masked-out steps are selected away, not multiplied by 0, so a non-finite value there
    (padding) cannot turn the mean into NaN.
    """
    if mask is None:
        return x.mean()
    mask = mask.bool()
    return torch.where(mask, x, x.new_zeros(())).sum() / mask.sum().clamp(min=1).to(x.dtype)


class MDNLoss(NamedTuple):
    loss: torch.Tensor
    gmm_nll: torch.Tensor
    reward_mse: torch.Tensor
    done_bce: torch.Tensor


def mdnrnn_loss(out: MDNOutput, z_next: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
                mask: torch.Tensor | None = None, done_pos_weight: float = 10.0,
                reward_weight: float = 1.0, done_weight: float = 1.0,
                z_mask: torch.Tensor | None = None,
                reward_weights: torch.Tensor | None = None) -> MDNLoss:
    """The training loss of M: GMM NLL + reward MSE + weighted done BCE, over unmasked steps.

    ``mask`` selects the steps whose reward and done count; ``z_mask`` (default: ``mask``)
    those whose z_next counts. They differ at the last step of an episode, which has a
    reward and a done target but no next frame. With K reward heads (``out.reward`` ... x K),
    ``reward_weights`` (B x K, 0 or 1) says which sequences each head learns from (its
    bootstrap); the reward MSE is the mean over heads of each head's masked mean.
    """
    nll = gmm_nll(z_next, out, mask if z_mask is None else z_mask)
    zero = nll.new_zeros(())
    if out.reward is None:
        reward_mse = zero
    elif out.reward.dim() == reward.dim():
        reward_mse = masked_mean((out.reward - reward).pow(2), mask)
    else:
        err = (out.reward - reward.unsqueeze(-1)).pow(2)                 # B x T x K
        m = (torch.ones_like(reward, dtype=torch.bool) if mask is None else mask.bool())
        w = m.unsqueeze(-1).to(err.dtype)                                # B x T x 1
        if reward_weights is not None:
            w = w * reward_weights.unsqueeze(1).to(err.dtype)            # B x T x K
        w = w.expand_as(err)
        per_head = (torch.where(w > 0, err, err.new_zeros(())) * w).sum((0, 1)) / \
            w.sum((0, 1)).clamp(min=1)
        reward_mse = per_head.mean()
    if out.done_logit is not None:
        pos_weight = torch.tensor(done_pos_weight, device=nll.device, dtype=nll.dtype)
        bce = F.binary_cross_entropy_with_logits(out.done_logit, done.to(nll.dtype),
                                                 pos_weight=pos_weight, reduction="none")
        done_bce = masked_mean(bce, mask)
    else:
        done_bce = zero
    total = nll + reward_weight * reward_mse + done_weight * done_bce
    return MDNLoss(total, nll, reward_mse, done_bce)


def sample_z(out: MDNOutput, tau: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z_{t+1} (... x Z) from the mixture at temperature tau.

    Component k ~ softmax(logpi / tau) per dimension (Gumbel-max), then
    z = mu_k + sigma_k * sqrt(tau) * eps. tau = 0 gives the mean of the most likely component.
    """
    if tau < 0:
        raise ValueError(f"temperature must be >= 0, got {tau}")
    if tau == 0:
        k = out.logpi.argmax(-1, keepdim=True)
        return out.mu.gather(-1, k).squeeze(-1)
    u = torch.rand(out.logpi.shape, generator=generator, device=out.logpi.device,
                   dtype=out.logpi.dtype)
    # u < 1, so -log(u) > 0; the floor only keeps log(0) away.
    gumbel = -torch.log(-torch.log(u.clamp_(min=torch.finfo(u.dtype).tiny)))
    k = (out.logpi / tau + gumbel).argmax(-1, keepdim=True)
    mu = out.mu.gather(-1, k).squeeze(-1)
    sigma = out.logsigma.gather(-1, k).squeeze(-1).exp()
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + sigma * math.sqrt(tau) * eps


def done_from_logit(done_logit: torch.Tensor, threshold: float = 0.5, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Terminal flags from the done head: p > threshold, or Bernoulli(p) when ``sample``."""
    p = torch.sigmoid(done_logit)
    if sample:
        return torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p
    return p > threshold


def load_mdnrnn(path, device: str | torch.device = "cpu",
                vae_path=None) -> tuple[MDNRNN, dict]:
    """Rebuild M from an ``mdnrnn`` checkpoint; eval mode.

    With ``vae_path``, refuse (CheckpointError) an M trained on another V's latents.
    """
    from .checkpoint import check_parent, load_checkpoint, load_state

    ckpt = load_checkpoint(path, kind="mdnrnn")
    if vae_path is not None:
        check_parent(ckpt, "vae_sha256", vae_path)
    c = ckpt["config"]
    args = ckpt.get("model_args") or dict(  # checkpoints of 0.1.0: the sizes from the config
        z_dim=c["z_dim"], action_dim=c["action_dim"], hidden_size=c["hidden_size"],
        n_gaussians=c["n_gaussians"], predict_reward=c["predict_reward"],
        predict_done=c["predict_done"], dropout=c.get("dropout", 0.0),
        reward_heads=c.get("reward_heads", 1))
    model = MDNRNN(**args)
    load_state(model, ckpt["model"], path)
    return model.to(device).eval(), ckpt
