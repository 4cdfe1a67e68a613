"""M, the MDN-RNN: size, the mixture NLL, sampling with temperature, heads, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldmodels.checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from worldmodels.mdnrnn import MDNRNN, MDNOutput, done_from_logit, gmm_nll, load_mdnrnn, mdnrnn_loss, sample_z

pytestmark = pytest.mark.usefixtures("one_thread")


def mixture(pi, mu, sigma, n=1) -> MDNOutput:
    """An MDNOutput of n identical steps; pi, mu, sigma are Z x K."""
    pi, mu, sigma = (torch.tensor(x, dtype=torch.float64) for x in (pi, mu, sigma))
    shape = (n, *pi.shape)
    return MDNOutput(pi.log().expand(shape), mu.expand(shape), sigma.log().expand(shape),
                     None, None)


def test_parameter_count_of_the_paper_model():
    m = MDNRNN(z_dim=32, action_dim=3, hidden_size=256, n_gaussians=5, predict_reward=False,
               predict_done=False)
    assert sum(p.numel() for p in m.parameters()) == 423_392
    with_heads = MDNRNN()
    assert sum(p.numel() for p in with_heads.parameters()) == 423_392 + 2 * 257


def test_gmm_nll_equals_a_hand_computed_value():
    pi = [[0.3, 0.7], [0.5, 0.5]]
    mu = [[0.0, 1.0], [-1.0, 2.0]]
    sigma = [[1.0, 0.5], [2.0, 0.1]]
    z = [0.4, 1.9]

    def normal(x, m, s):
        return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    per_dim = [math.log(sum(p * normal(x, m, s) for p, m, s in zip(pi[d], mu[d], sigma[d])))
               for d, x in enumerate(z)]
    expected = -sum(per_dim) / 2          # averaged over latent dims
    got = gmm_nll(torch.tensor([z], dtype=torch.float64), mixture(pi, mu, sigma))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # masked steps do not count, even when they hold garbage
    z2 = torch.tensor([z, [float("nan"), 1e9]], dtype=torch.float64)
    masked = gmm_nll(z2, mixture(pi, mu, sigma, n=2), mask=torch.tensor([True, False]))
    assert masked.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 0.5, 1.5])
def test_samples_have_the_mixture_statistics_at_temperature(tau):
    pi = np.array([[0.25, 0.75], [0.6, 0.4]])
    mu = np.array([[-3.0, 3.0], [1.0, 0.5]])
    sigma = np.array([[0.5, 0.8], [0.3, 1.2]])
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    z = sample_z(mixture(pi, mu, sigma, n), tau=tau, generator=gen).numpy()
    assert z.shape == (n, 2)
    # tempered weights: softmax(log pi / tau); tempered std: sigma * sqrt(tau)
    w = pi ** (1 / tau)
    w /= w.sum(1, keepdims=True)
    mean = (w * mu).sum(1)
    var = (w * (tau * sigma ** 2 + mu ** 2)).sum(1) - mean ** 2
    se = np.sqrt(var / n)
    assert np.all(np.abs(z.mean(0) - mean) < 5 * se), (z.mean(0), mean)
    np.testing.assert_allclose(z.var(0), var, rtol=0.03)
    # dim 0's components are far apart: the share of positive samples is the tempered weight
    assert (z[:, 0] > 0).mean() == pytest.approx(w[0, 1], abs=0.005)


def test_temperature_zero_collapses_to_the_most_likely_mean():
    out = mixture([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], [[0.0, 4.0, -2.0], [1.5, 9.0, -9.0]],
                  [[1.0, 2.0, 1.0], [0.5, 3.0, 3.0]], n=1000)
    expected = torch.tensor([4.0, 1.5], dtype=torch.float64).expand(1000, 2)
    assert torch.equal(sample_z(out, tau=0.0), expected)
    near_zero = sample_z(out, tau=1e-6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(near_zero, expected, atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        sample_z(out, tau=-1.0)


def test_done_from_logit_thresholds_or_samples():
    logits = torch.tensor([-3.0, 0.1, 2.0])
    assert done_from_logit(logits).tolist() == [False, True, True]
    assert done_from_logit(logits, threshold=0.8).tolist() == [False, False, True]
    p = torch.sigmoid(torch.tensor(0.5)).item()
    sampled = done_from_logit(torch.full((100_000,), 0.5), sample=True,
                              generator=torch.Generator().manual_seed(0))
    assert sampled.float().mean().item() == pytest.approx(p, abs=0.01)


def test_fused_step_matches_the_sequence_forward():
    torch.manual_seed(0)
    m = MDNRNN(z_dim=4, hidden_size=16, n_gaussians=3)
    z, a = torch.randn(2, 7, 4), torch.randn(2, 7, 3)
    seq, _ = m(z, a)
    state = m.initial_state(2)
    for t in range(7):
        out, h, state = m.step(z[:, t], a[:, t], state)
        for name in ("logpi", "mu", "logsigma", "reward", "done_logit"):
            torch.testing.assert_close(getattr(out, name), getattr(seq, name)[:, t])


def test_reward_and_done_heads_learn_a_toy_signal():
    """reward_t = 2 z_t[0] - a_t[1]; done_t when z_t[0] crosses 1."""
    torch.manual_seed(0)
    m = MDNRNN(z_dim=4, action_dim=3, hidden_size=32, n_gaussians=2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)

    def data(n):
        z, a = torch.randn(n, 10, 4), torch.rand(n, 10, 3) * 2 - 1
        return z, a, 2 * z[..., 0] - a[..., 1], z[..., 0] > 1.0

    def losses(z, a, reward, done):
        out, _ = m(z, a)
        return mdnrnn_loss(out, torch.zeros_like(z), reward, done, done_pos_weight=1.0)

    test = data(256)
    with torch.no_grad():
        before = losses(*test)
    for _ in range(150):
        loss = losses(*data(32)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = losses(*test)
        out, _ = m(test[0], test[1])
    assert after.reward_mse < 0.1 * before.reward_mse
    assert after.done_bce < 0.4 * before.done_bce
    done, predicted = test[3], done_from_logit(out.done_logit)
    assert (predicted == done).float().mean() > 0.93     # always "not done" scores 0.84
    assert predicted[done].float().mean() > 0.6 and (~predicted[~done]).float().mean() > 0.95


def _save_m(path, model, vae_sha256):
    cfg = {"z_dim": model.z_dim, "action_dim": model.action_dim,
           "hidden_size": model.hidden_size, "n_gaussians": model.n_gaussians,
           "predict_reward": True, "predict_done": True}
    save_checkpoint(path, kind="mdnrnn", config=cfg, model=model.state_dict(),
                    parents={"vae_sha256": vae_sha256} if vae_sha256 else None)


def test_an_m_loads_only_against_the_v_it_was_trained_on(tmp_path):
    vae, other = tmp_path / "vae.pt", tmp_path / "other.pt"
    vae.write_bytes(b"V one")
    other.write_bytes(b"V two")
    m = MDNRNN(z_dim=4, hidden_size=8, n_gaussians=2)
    _save_m(tmp_path / "m.pt", m, checkpoint_sha256(vae))
    loaded, _ = load_mdnrnn(tmp_path / "m.pt", vae_path=vae)
    assert not loaded.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(CheckpointError, match="different vae"):
        load_mdnrnn(tmp_path / "m.pt", vae_path=other)
    _save_m(tmp_path / "orphan.pt", m, None)
    with pytest.raises(CheckpointError, match="records no vae_sha256"):
        load_mdnrnn(tmp_path / "orphan.pt", vae_path=vae)


def test_loading_into_other_sizes_names_the_mismatch(tmp_path):
    _save_m(tmp_path / "m.pt", MDNRNN(z_dim=4, hidden_size=8, n_gaussians=2), "x")
    ckpt = load_checkpoint(tmp_path / "m.pt", kind="mdnrnn")
    with pytest.raises(CheckpointError, match=r"lstm.weight_hh_l0: checkpoint \(32, 8\) vs "
                                              r"model \(64, 16\)"):
        load_state(MDNRNN(z_dim=4, hidden_size=16, n_gaussians=2), ckpt["model"], "m.pt")
    with pytest.raises(CheckpointError, match="missing: .*done_head"):
        load_state(MDNRNN(z_dim=4, hidden_size=8, n_gaussians=2),
                   {k: v for k, v in ckpt["model"].items() if not k.startswith("done")}, "m.pt")
    with pytest.raises(CheckpointError, match="is a 'mdnrnn' checkpoint, expected 'vae'"):
        load_checkpoint(tmp_path / "m.pt", kind="vae")
