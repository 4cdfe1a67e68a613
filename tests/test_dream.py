"""The batched dream (worldmodels.dream), the `dream` command and worldmodels.video."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.checkpoint import CheckpointError, save_checkpoint
from worldmodels.cli import CLIError
from worldmodels.config import VAEConfig
from worldmodels.controller import Controller
from worldmodels.dream import BatchedDream, reference_dream
from worldmodels.mdnrnn import MDNRNN, load_mdnrnn
from worldmodels.testing import DH as H
from worldmodels.testing import DK as K
from worldmodels.testing import DZ as Z
from worldmodels.testing import save_tiny_models, tiny_mdnrnn
from worldmodels.vae import ConvVAE
from worldmodels.video import hstack_panels, read_video_frames, write_video


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def make_dream(m: MDNRNN | None = None, **kw) -> BatchedDream:
    gen = torch.Generator().manual_seed(1)
    return BatchedDream(m if m is not None else tiny_mdnrnn(), torch.randn(5, Z, generator=gen),
                        torch.full((5, Z), -2.0), **kw)


# --- BatchedDream ----------------------------------------------------------------------------

def test_step_follows_the_reference_dream_at_temperature_zero():
    """Fused weights and buffers compute exactly M's step: h, the collapsed z, the reward."""
    m = tiny_mdnrnn()
    dream = make_dream(m, temperature=0.0)
    torch.manual_seed(3)
    z0 = torch.randn(4, Z)
    actions = torch.rand(6, 4, 3)
    z, h = dream.reset(4, z=z0)
    z_ref, state = z0, m.initial_state(4)
    with torch.no_grad():
        for a in actions:
            ref = reference_dream(m, z_ref, a, state, temperature=0.0)
            z_ref, state = ref.z, ref.state
            z, h, reward, done = dream.step(a)
            torch.testing.assert_close(h, ref.h, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(z, ref.z, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(reward, ref.reward, atol=1e-5, rtol=1e-5)
            assert not done.any() and not ref.done.any()


def test_ties_pick_the_first_component_like_argmax():
    m = tiny_mdnrnn()
    with torch.no_grad():
        m.mdn.weight.view(Z, 3, K, H)[:, 0] = 0.0   # all mixture logits equal
        m.mdn.bias.view(Z, 3, K)[:, 0] = 0.0
    dream = make_dream(m, temperature=0.0)
    z0, a = torch.randn(2, Z), torch.rand(2, 3)
    dream.reset(2, z=z0)
    z, *_ = dream.step(a)
    with torch.no_grad():
        out, _, _ = m.step(z0, a, m.initial_state(2))
    torch.testing.assert_close(z, out.mu[..., 0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_dream_matches_cpu_at_temperature_zero():
    m = tiny_mdnrnn()
    params = torch.randn(3, (Z + H) * 3 + 3)
    cpu = make_dream(m, temperature=0.0, max_steps=20).evaluate(params, 2, seed=0)
    gpu = make_dream(m, temperature=0.0, max_steps=20, device="cuda").evaluate(params, 2, seed=0)
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-3)
    sampled = make_dream(m, temperature=1.0, max_steps=20, device="cuda").evaluate(params, 2, seed=0)
    assert sampled.shape == (3, 2) and torch.isfinite(sampled).all()


def test_next_z_has_the_tempered_mixture_statistics():
    """One step from one state, 20000 times: mean and variance of the mixture at tau."""
    m = tiny_mdnrnn()
    tau = 1.5
    n = 20_000
    dream = make_dream(m, temperature=tau)
    z0 = torch.randn(1, Z).expand(n, Z)
    a = torch.tensor([[0.2, 0.5, 0.1]]).expand(n, 3)
    dream.reset(n, generator=0, z=z0)
    z, *_ = dream.step(a)
    with torch.no_grad():
        out, _, _ = m.step(z0[:1], a[:1], m.initial_state(1))
    pi = torch.softmax(out.logpi[0] / tau, -1)
    mu, var = out.mu[0], out.logsigma[0].exp().pow(2) * tau
    mean = (pi * mu).sum(-1)
    variance = (pi * (var + mu ** 2)).sum(-1) - mean ** 2
    se = (variance / n).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * se).all()
    torch.testing.assert_close(z.var(0), variance, rtol=0.1, atol=1e-4)


def test_evaluate_batched_equals_one_by_one_and_env_style_steps():
    dream = make_dream(temperature=1.2, max_steps=25, sample_done=True)
    torch.manual_seed(0)
    params = torch.randn(4, dream.n_params) * 0.5
    batched = dream.evaluate(params, n_rollouts=3, seed=7)
    assert batched.shape == (4, 3)
    single = torch.cat([dream.evaluate(p[None], n_rollouts=3, seed=7) for p in params])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # different controllers, different returns
    assert not torch.allclose(dream.evaluate(params[:1], 3, seed=8), batched[:1])

    # Rollout 0 of evaluate == the env-style API with the same seed and C's actions.
    c = Controller(Z, H)
    c.set_flat(params[2].numpy())
    z, h = dream.reset(1, generator=7)
    ret = 0.0
    with torch.no_grad():
        for _ in range(25):
            z, h, reward, done = dream.step(c(z, h))
            ret += float(reward[0])
    assert dream.truncated
    assert ret == pytest.approx(float(dream.evaluate(params[2:3], 1, seed=7)[0, 0]), abs=1e-4)


def test_controllers_that_read_the_lstm_cell_see_the_dreams_own_c():
    """features "zch": C reads [z, h, c]; evaluate scores exactly what the env-style API with
    the dream's own c gives, and a C whose c weights are zero acts as the [z, h] C it extends."""
    dream = make_dream(temperature=1.1, max_steps=20, sample_done=True, features="zch")
    zh = make_dream(temperature=1.1, max_steps=20, sample_done=True)
    assert dream.n_params == (Z + 2 * H) * 3 + 3 and zh.n_params == (Z + H) * 3 + 3
    torch.manual_seed(0)
    params = torch.randn(3, dream.n_params) * 0.5
    returns = dream.evaluate(params, n_rollouts=2, seed=4)
    c = Controller(Z, H, features="zch")
    c.set_flat(params[1].numpy())
    z, h = dream.reset(1, generator=4)
    ret = 0.0
    with torch.no_grad():
        for _ in range(20):
            assert dream.c.shape == (1, H)
            z, h, reward, done = dream.step(c(z, h, dream.c))
            ret += float(reward[0])
    assert ret == pytest.approx(float(dream.evaluate(params[1:2], 1, seed=4)[0, 0]), abs=1e-4)

    # c's weights matter: zero them and the returns are those of the [z, h] C.
    w = params[:, :(Z + 2 * H) * 3].reshape(3, 3, Z + 2 * H)
    flat_zh = torch.cat([w[:, :, :Z + H].reshape(3, -1), params[:, -3:]], 1)
    no_c = torch.cat([torch.cat([w[:, :, :Z + H], torch.zeros(3, 3, H)], 2).reshape(3, -1),
                      params[:, -3:]], 1)
    torch.testing.assert_close(dream.evaluate(no_c, 2, seed=4), zh.evaluate(flat_zh, 2, seed=4))
    assert not torch.allclose(dream.evaluate(no_c, 2, seed=4), returns)
    with pytest.raises(ValueError, match="unknown features 'zhc'"):
        make_dream(features="zhc")


def test_done_masks_freeze_finished_dreams():
    """p(done) = 0.5 sampled each step; reward 1 per step: return = steps until done."""
    m = tiny_mdnrnn()
    with torch.no_grad():
        m.done_head.weight.zero_()
        m.done_head.bias.zero_()
        m.reward_head.weight.zero_()
        m.reward_head.bias.fill_(1.0)
    dream = make_dream(m, temperature=1.0, sample_done=True, max_steps=30)
    b = 64
    action = torch.tensor([[0.0, 0.5, 0.0]]).expand(b, 3)  # what a zero controller does
    z, h = dream.reset(b, generator=11)
    done_prev = torch.zeros(b, dtype=torch.bool)
    total = torch.zeros(b)
    for _ in range(30):
        z_prev, h_prev = z, h
        z, h, reward, done = dream.step(action)
        assert (done | ~done_prev).all(), "a finished dream came back to life"
        assert (reward[done_prev] == 0).all() and (reward[~done_prev] == 1).all()
        torch.testing.assert_close(z[done_prev], z_prev[done_prev], rtol=0, atol=0)
        torch.testing.assert_close(h[done_prev], h_prev[done_prev], rtol=0, atol=0)
        total += reward
        done_prev = done
    assert done.all()  # P(a dream survives 30 halvings) ~ 1e-9
    assert total.min() >= 1 and total.max() <= 30 and len(total.unique()) > 3
    # The same dreams through evaluate (a zero controller acts (0, 0.5, 0)).
    returns = dream.evaluate(torch.zeros(1, dream.n_params), n_rollouts=b, seed=11)
    torch.testing.assert_close(returns[0], total)


def test_done_logit_offset_is_a_shift_of_the_done_heads_bias():
    """A dream with ``done_logit_offset`` d is the dream of the same M with d added to its done
    head's bias: the same dones and returns, draw for draw; a negative offset kills less."""
    m = tiny_mdnrnn()
    with torch.no_grad():
        m.done_head.bias.fill_(-1.0)
        m.reward_head.weight.zero_()
        m.reward_head.bias.fill_(1.0)
    shifted = tiny_mdnrnn()
    shifted.load_state_dict(m.state_dict())
    with torch.no_grad():
        shifted.done_head.bias.add_(-2.5)
    params = torch.randn(3, make_dream(m).n_params, generator=torch.Generator().manual_seed(4))
    kw = dict(temperature=1.0, sample_done=True, max_steps=40)
    offset = make_dream(m, done_logit_offset=-2.5, **kw).evaluate(params, 16, seed=5)
    torch.testing.assert_close(offset, make_dream(shifted, **kw).evaluate(params, 16, seed=5))
    plain = make_dream(m, **kw).evaluate(params, 16, seed=5)
    assert offset.mean() > plain.mean() + 2  # p(done) ~ sigmoid(-1 + ...) vs sigmoid(-3.5 + ...)
    with pytest.raises(ValueError, match="done_logit_offset must be finite"):
        make_dream(m, done_logit_offset=float("nan"))


def test_max_steps_truncation():
    m = tiny_mdnrnn()
    with torch.no_grad():
        m.reward_head.weight.zero_()
        m.reward_head.bias.fill_(0.5)
    dream = make_dream(m, max_steps=12)
    returns = dream.evaluate(torch.zeros(3, dream.n_params), n_rollouts=2, seed=0)
    torch.testing.assert_close(returns, torch.full((3, 2), 6.0))
    dream.reset(2, generator=0)
    for _ in range(12):
        assert not dream.truncated
        dream.step(torch.zeros(2, 3))
    assert dream.truncated and dream.t == 12
    with pytest.raises(RuntimeError, match="max_steps"):
        dream.step(torch.zeros(2, 3))


def test_temperature_zero_is_deterministic_whatever_the_seed():
    dream = make_dream(temperature=0.0, max_steps=15)
    params = torch.randn(3, dream.n_params)
    torch.testing.assert_close(dream.evaluate(params, 4, seed=0), dream.evaluate(params, 4, seed=123),
                               rtol=0, atol=0)
    a = torch.rand(3, 3)
    runs = []
    for seed in (0, 1):
        dream.reset(3, generator=seed)
        runs.append(dream.step(a)[0])
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_from_checkpoint_checks_v_and_initial_encodings(models, tmp_path):
    vae_path, m_path = models
    dream = BatchedDream.from_checkpoint(m_path, vae_path=vae_path, temperature=1.1)
    assert dream.initial_mu.shape == (5, Z) and dream.n_params == (Z + H) * 3 + 3
    other_vae = save_checkpoint(tmp_path / "other.pt", kind="vae", config=asdict(VAEConfig(z_dim=Z)),
                                model=ConvVAE(z_dim=Z).state_dict())
    with pytest.raises(CheckpointError, match="different vae"):
        BatchedDream.from_checkpoint(m_path, vae_path=other_vae)
    m, ckpt = load_mdnrnn(m_path)
    bare = save_checkpoint(tmp_path / "bare.pt", kind="mdnrnn", config=ckpt["config"],
                           model=m.state_dict(), parents=ckpt["parents"])
    with pytest.raises(CheckpointError, match="no initial encodings"):
        BatchedDream.from_checkpoint(bare)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        make_dream(temperature=-1.0)
    dream = make_dream()
    with pytest.raises(ValueError, match="params must be P x"):
        dream.evaluate(torch.zeros(2, 5), 1, 0)
    with pytest.raises(RuntimeError, match="reset"):
        dream.step(torch.zeros(1, 3))
    dream.reset(2, generator=0)
    with pytest.raises(ValueError, match="action must be 2 x 3"):
        dream.step(torch.zeros(3))


# --- video.py --------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_video_round_trip(tmp_path, ext):
    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), 8, 1), 8, 2)
    path = write_video(tmp_path / f"v{ext}", frames, fps=10)
    back = read_video_frames(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    # mp4 is lossy and gif quantises colours: compare loosely, frame by frame.
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 25
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"v{ext}"]  # no temporary left


def test_video_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown extension '.avi'"):
        write_video(tmp_path / "v.avi", np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="T x H x W x 3 uint8"):
        write_video(tmp_path / "v.gif", np.zeros((2, 8, 8), np.uint8))


def test_hstack_panels_layout():
    a = np.zeros((64, 64, 3), np.uint8)
    out = hstack_panels([a, a + 255, a], ["one", "two", "three"], size=128)
    assert out.shape == (128, 384, 3)
    assert out[:, :128].max() > 0, "the label is drawn"
    assert out[100:, 128:256].min() == 255


# --- the dream command -----------------------------------------------------------------------

def run_dream(*argv: str) -> int:
    from worldmodels.commands import dream as dream_cli

    parser = argparse.ArgumentParser()
    dream_cli.add_arguments(parser)
    return dream_cli.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize("actions", ["random", "file"])
def test_dream_record(models, tmp_path, actions):
    vae_path, m_path = models
    if actions == "file":
        np.save(tmp_path / "a.npy", np.tile([[0.1, 0.6, 0.0]], (12, 1)).astype(np.float32))
        actions = str(tmp_path / "a.npy")
    out = tmp_path / "dream.gif"
    assert run_dream("--vae", str(vae_path), "--rnn", str(m_path), "--record", str(out),
                     "--steps", "9", "--actions", actions, "--size", "96", "--device", "cpu",
                     "--tb-dir", str(tmp_path / "tb")) == 0
    frames = read_video_frames(out)
    assert frames.shape == (10, 96, 96, 3)
    assert any(p.name.startswith("events.out") for p in (tmp_path / "tb").iterdir())


def test_open_loop_video_has_three_panels(models, tmp_path, make_rollouts):
    vae_path, m_path = models
    data = make_rollouts(tmp_path / "rollouts", lengths=(6, 9))
    out = tmp_path / "openloop.mp4"
    assert run_dream("--vae", str(vae_path), "--rnn", str(m_path), "--record", str(out),
                     "--open-loop", "--data", str(data), "--episode", "1", "--size", "64",
                     "--device", "cpu") == 0
    frames = read_video_frames(out)
    assert frames.shape == (9, 64, 3 * 64, 3)  # the episode's 9 frames: real | dream | diff
    with pytest.raises(CLIError, match="--episode 4 is not in"):
        run_dream("--vae", str(vae_path), "--rnn", str(m_path), "--record", str(out),
                  "--open-loop", "--data", str(data), "--episode", "4")


def test_dream_cli_errors(models, tmp_path):
    vae_path, m_path = models
    base = ("--vae", str(vae_path), "--rnn", str(m_path))
    with pytest.raises(CLIError, match="nothing to do"):
        run_dream(*base)
    with pytest.raises(CLIError, match=r"\.mp4 or \.gif"):
        run_dream(*base, "--record", str(tmp_path / "x.avi"))
    with pytest.raises(CLIError, match="needs --data"):
        run_dream(*base, "--record", str(tmp_path / "x.gif"), "--open-loop")
    with pytest.raises(CLIError, match="unknown policy"):
        run_dream(*base, "--record", str(tmp_path / "x.gif"), "--actions", "nope")


def test_keyboard_without_display_is_a_clear_error(models, monkeypatch):
    vae_path, m_path = models
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(CLIError, match="no display.*xvfb-run"):
        run_dream("--vae", str(vae_path), "--rnn", str(m_path), "--keyboard")


def test_keyboard_drives_under_a_dummy_display(models, tmp_path, monkeypatch):
    vae_path, m_path = models
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    out = tmp_path / "drive.gif"
    assert run_dream("--vae", str(vae_path), "--rnn", str(m_path), "--keyboard", "--steps", "3",
                     "--fps", "1000", "--record", str(out)) == 0
    assert read_video_frames(out).shape == (3, 512, 512, 3)


def test_c_drives_the_dream_on_the_dreams_own_z_and_h(models, tmp_path):
    """`dream --controller C.pt`: every action is C's output on the z and h the dream is in,
    and V and M default to the ones C records."""
    from worldmodels.checkpoint import checkpoint_sha256
    from worldmodels.commands import dream as dream_cli
    from worldmodels.config import ControllerConfig
    from worldmodels.worlds import CARRACING

    vae_path, m_path = models
    torch.manual_seed(3)
    c = Controller(Z, H)
    with torch.no_grad():
        c.fc.weight.mul_(20.0)  # actions far from 0, different every step
    c_path = save_checkpoint(
        tmp_path / "c.pt", kind="controller", config=asdict(ControllerConfig()),
        model=c.state_dict(), model_args=c.model_args,
        parents={"vae_sha256": checkpoint_sha256(vae_path), "mdnrnn_sha256": checkpoint_sha256(m_path)},
        extra={"vae_path": str(vae_path), "mdnrnn_path": str(m_path)})
    out = tmp_path / "c_dream.gif"
    assert run_dream("--controller", str(c_path), "--record", str(out), "--steps", "6",
                     "--size", "64", "--temperature", "0") == 0
    assert read_video_frames(out).shape == (7, 64, 64, 3)

    args = argparse.Namespace(controller=str(c_path), actions=None, world_spec=CARRACING)
    act, limit = dream_cli.action_source(args)
    dream = BatchedDream.from_checkpoint(m_path, temperature=0.0, max_steps=100, done_threshold=1.0)
    zs, actions, _ = dream_cli.dream_rollout(dream, act, 6, seed=0)
    assert limit is None and len(actions) == 7
    # Replay: the same dream stepped with C's outputs, computed here from its z and h.
    z, h = dream.reset(1, 0)
    for t in range(6):
        with torch.no_grad():
            a = c(z, h)
        np.testing.assert_allclose(actions[t + 1], a[0].numpy(), rtol=1e-6)
        torch.testing.assert_close(zs[t], z[0])
        z, h, _, _ = dream.step(a)
    assert len({tuple(np.round(a, 3)) for a in actions[1:]}) > 1  # C reacts to the dream


def test_branch_starts_are_ms_own_states_on_real_data(tmp_path):
    """Each branched start holds the (h, c) that M's LSTM has after reading the episode's
    steps before t (teacher forcing with mu), and that step's mu and logvar."""
    from worldmodels.data import append_manifest, shard_name, write_shard
    from worldmodels.dream import branch_starts

    m = tiny_mdnrnn(seed=2)
    rng = np.random.default_rng(0)
    folder = tmp_path / "latents"
    folder.mkdir()
    episodes = []
    for i, T in enumerate((7, 12)):
        arrays = {"mu": rng.normal(size=(T, Z)).astype(np.float32),
                  "logvar": rng.normal(-2, 0.1, size=(T, Z)).astype(np.float32),
                  "action": rng.uniform(-1, 1, size=(T, 3)).astype(np.float32),
                  "reward": np.zeros(T, np.float32), "terminated": np.zeros(T, bool),
                  "truncated": np.arange(T) == T - 1}
        sha = write_shard(folder / shard_name(i), arrays, kind="latent")
        append_manifest(folder, {"index": i, "file": shard_name(i), "length": T, "sha256": sha})
        episodes.append(arrays)
    starts = branch_starts(m, [folder], n=30, seed=1)
    assert {k: tuple(v.shape) for k, v in starts.items()} == {
        "mu": (30, Z), "logvar": (30, Z), "h": (30, H), "c": (30, H)}
    found = 0
    for ep in episodes:
        x = torch.cat([torch.from_numpy(ep["mu"]), torch.from_numpy(ep["action"])], 1)
        with torch.no_grad():
            for t in range(len(x)):
                if t == 0:
                    h, c = torch.zeros(1, 1, H), torch.zeros(1, 1, H)
                else:
                    _, (h, c) = m.lstm(x[None, :t])
                hit = (starts["mu"] == torch.from_numpy(ep["mu"][t])).all(1)
                for p in torch.nonzero(hit).flatten():
                    found += 1
                    torch.testing.assert_close(starts["h"][p], h[0, 0], rtol=1e-4, atol=1e-5)
                    torch.testing.assert_close(starts["c"][p], c[0, 0], rtol=1e-4, atol=1e-5)
    assert found == 30


def test_branched_dreams_start_from_the_given_states():
    """A dream started from (z, h, c) steps exactly like M stepped from that state, and
    evaluate (P controllers at once) agrees with the env-style path."""
    m = tiny_mdnrnn(seed=3)
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, Z, generator=gen), torch.full((4, Z), -3.0)
    h0, c0 = torch.randn(4, H, generator=gen) * 0.5, torch.randn(4, H, generator=gen)
    dream = BatchedDream(m, mu, logvar, temperature=0.0, max_steps=5, initial_h=h0, initial_c=c0)
    z, h = dream.reset(4, 0)
    torch.testing.assert_close(z, mu)
    torch.testing.assert_close(h, h0)
    a = torch.tensor([[0.3, 0.5, 0.0]]).repeat(4, 1)
    z1, h1, r1, _ = dream.step(a)
    with torch.no_grad():
        ref = reference_dream(m, mu, a, (h0.unsqueeze(0), c0.unsqueeze(0)), temperature=0.0)
    torch.testing.assert_close(h1, ref.h, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z1, ref.z, rtol=1e-4, atol=1e-5)
    params = torch.randn(3, dream.n_params) * 0.3
    together = dream.evaluate(params, 4, seed=1)
    one_by_one = torch.cat([dream.evaluate(p[None], 4, seed=1) for p in params])
    torch.testing.assert_close(together, one_by_one)
    plain = BatchedDream(m, mu, logvar, temperature=0.0, max_steps=5)
    assert not torch.allclose(plain.evaluate(params, 4, seed=1), together)  # h, c matter
    with pytest.raises(ValueError, match="both initial_h and initial_c"):
        BatchedDream(m, mu, logvar, initial_h=h0)


def test_dream_kwargs_are_the_controller_configs_dream():
    """One function turns a C config (dataclass, or a checkpoint's dict, old ones without
    the newer keys) and a world into BatchedDream's settings."""
    from dataclasses import asdict

    from worldmodels.config import ControllerConfig
    from worldmodels.dream import dream_kwargs
    from worldmodels.worlds import CARRACING, TAKE_COVER

    car, doom = CARRACING, TAKE_COVER
    cfg = ControllerConfig(temperature=0.9, dream_max_steps=200, done_threshold=0.3,
                           sample_done=True, dream_dropout=0.1, reward_penalty=0.5,
                           done_logit_offset=-2.0, features="zch")
    kw = dream_kwargs(cfg, car)
    assert kw == dict(temperature=0.9, max_steps=200, done_threshold=0.3, sample_done=True,
                      dropout=0.1, reward_penalty=0.5, action_map="carracing", reward="head",
                      done_logit_offset=-2.0, features="zch")
    assert dream_kwargs(asdict(cfg), car) == kw
    old = {"temperature": 1.3}  # a checkpoint from before the other settings existed
    d = ControllerConfig()
    assert dream_kwargs(old, doom) == dict(
        temperature=1.3, max_steps=d.dream_max_steps, done_threshold=d.done_threshold,
        sample_done=d.sample_done, dropout=d.dream_dropout, reward_penalty=d.reward_penalty,
        action_map="thirds", reward="survival", done_logit_offset=0.0, features="zh")
    assert dream_kwargs(cfg, car, max_steps=10**9)["max_steps"] == 10**9
    with pytest.raises(TypeError, match="unknown setting.*'tau'"):
        dream_kwargs(cfg, car, tau=1.0)
