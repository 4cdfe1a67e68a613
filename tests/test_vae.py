"""V: the ConvVAE, its loss, and `worldmodels train-vae` (streaming, logging, resume)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import worldmodels.commands.train_vae as tv
from worldmodels.checkpoint import load_checkpoint
from worldmodels.config import VAEConfig, get_preset
from worldmodels.data import ShardError, read_episode
from worldmodels.runs import RunConfigMismatch
from worldmodels.vae import ConvVAE, VAEOutput, frames_to_tensor, load_vae, vae_loss

# Five 20-frame episodes, one held out: 80 training frames, 5 steps of 16 per epoch; windows
# of 30 frames (two episodes) so that batches run across window boundaries.
LENGTHS = (20, 20, 20, 20, 20)
CFG = VAEConfig(epochs=3, batch_size=16, lr=1e-3, val_episodes=1, seed=3)
WINDOW = 30


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def rollouts(tmp_path, make_rollouts) -> Path:
    return make_rollouts(tmp_path / "rollouts", lengths=LENGTHS, seed=1)


def train(data: Path, out: Path, cfg: VAEConfig = CFG, **kwargs) -> Path:
    kwargs.setdefault("window_frames", WINDOW)
    return tv.train_vae(data, out, cfg, device="cpu", progress=False, **kwargs)


# --- the model and its loss -------------------------------------------------------------------

def test_parameter_count():
    assert sum(p.numel() for p in ConvVAE().parameters()) == 4_348_547


def test_encoder_and_decoder_shapes():
    vae = ConvVAE()
    x = torch.rand(2, 3, 64, 64)
    sizes = []
    h = x
    for layer in vae.encoder:
        h = layer(h)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(h.shape[-1])
    assert sizes == [31, 14, 6, 2] and h.shape == (2, 1024)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, 32)

    h = vae.fc_dec(mu).view(-1, 1024, 1, 1)
    sizes = [h.shape[-1]]
    for layer in vae.decoder:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            sizes.append(h.shape[-1])
    assert sizes == [1, 5, 13, 30, 64]
    recon = vae.decode(mu)
    assert recon.shape == (2, 3, 64, 64) and 0 <= recon.min() and recon.max() <= 1
    with pytest.raises(ValueError, match="N x 3 x 64 x 64"):
        vae.encode(torch.rand(2, 64, 64, 3))


def test_free_bits_floor():
    x = torch.rand(4, 3, 64, 64)
    recon = torch.rand(4, 3, 64, 64)
    floor = 0.5 * 32

    # Close to the prior: KL (~0.3 nats) is below the floor, which replaces it: no gradient.
    mu = torch.full((4, 32), 0.1, requires_grad=True)
    logvar = torch.zeros(4, 32, requires_grad=True)
    losses = vae_loss(VAEOutput(recon, mu, logvar, mu), x, kl_tolerance=0.5)
    assert 0 < losses.kl.item() < floor
    assert losses.loss.item() == pytest.approx(losses.recon.item() + floor)
    losses.loss.backward()
    assert torch.count_nonzero(mu.grad) == 0 and torch.count_nonzero(logvar.grad) == 0

    # Far from the prior: the KL itself counts and pulls mu towards 0.
    mu = torch.full((4, 32), 2.0, requires_grad=True)
    losses = vae_loss(VAEOutput(recon, mu, logvar, mu), x, kl_tolerance=0.5)
    assert losses.kl.item() == pytest.approx(32 * 2.0 ** 2 / 2) and losses.kl.item() > floor
    assert losses.loss.item() == pytest.approx(losses.recon.item() + losses.kl.item())
    losses.loss.backward()
    assert torch.all(mu.grad > 0)


def smooth_frames(n: int, seed: int = 0) -> np.ndarray:
    """Frames with a distinct two-colour gradient each, so reconstructions can tell them apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    frames = []
    for _ in range(n):
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        s = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None].clip(0, 1)
        frames.append(c0 * (1 - s) + c1 * s)
    return (np.stack(frames) * 255).round().astype(np.uint8)


def test_overfits_one_batch():
    torch.manual_seed(0)
    x = frames_to_tensor(torch.from_numpy(smooth_frames(8)))
    vae = ConvVAE()
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    noise = torch.Generator().manual_seed(0)
    history = []
    for _ in range(100):
        losses = vae_loss(vae(x, generator=noise), x, kl_tolerance=0.5)
        optimizer.zero_grad()
        losses.loss.backward()
        optimizer.step()
        history.append((losses.loss.item(), losses.recon.item()))
    assert history[-1][0] < 0.5 * history[0][0]
    # Better than the best frame-independent output (the mean frame): it tells frames apart.
    mean_frame_error = (x - x.mean(0, keepdim=True)).pow(2).flatten(1).sum(1).mean().item()
    assert history[-1][1] < 0.7 * mean_frame_error


# --- the data stream --------------------------------------------------------------------------

def test_epoch_plan_is_seeded_and_covers_every_frame():
    lengths = [20, 7, 33, 12, 50, 1]
    plan = tv.EpochPlan(lengths, seed=0, epoch=0, window_frames=30)
    assert plan.total == sum(lengths)
    assert sorted(np.concatenate(plan.windows).tolist()) == list(range(len(lengths)))
    for w, episodes in enumerate(plan.windows):
        size = sum(lengths[i] for i in episodes)
        assert sorted(plan.window_order(w).tolist()) == list(range(size))
    again = tv.EpochPlan(lengths, seed=0, epoch=0, window_frames=30)
    other = tv.EpochPlan(lengths, seed=0, epoch=1, window_frames=30)
    assert all(np.array_equal(a, b) for a, b in zip(plan.windows, again.windows))
    assert np.array_equal(plan.window_order(0), again.window_order(0))
    assert not all(len(a) == len(b) and np.array_equal(a, b)
                   for a, b in zip(plan.windows, other.windows))
    assert tv.EpochPlan(lengths, 0, 0, 30, max_frames=40).total == 40


def test_stream_yields_every_frame_once_from_any_start(rollouts):
    train_eps, val_eps = tv.split_episodes(rollouts, val_episodes=1)
    assert [e["index"] for e in val_eps] == [4]
    frames = np.concatenate([read_episode(rollouts, e)["obs"] for e in train_eps])
    plan = tv.EpochPlan([20] * 4, seed=0, epoch=0, window_frames=WINDOW)

    def stream(start: int) -> list[tuple[np.ndarray, int]]:
        with tv.load_windows(rollouts, train_eps, plan, start) as windows:
            return list(tv.iter_batches(windows, 16))

    full = stream(0)
    assert [len(b) for b, _ in full] == [16] * 5 and full[-1][1] == 80
    seen = np.concatenate([b for b, _ in full])
    # A permutation of the training frames (compare frames as bytes).
    assert sorted(f.tobytes() for f in seen) == sorted(f.tobytes() for f in frames)
    # Restarting at a batch boundary gives the same remaining batches.
    resumed = stream(full[1][1])
    assert len(resumed) == 3
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(full[2:], resumed))


# --- train-vae ------------------------------------------------------------------------------------

def test_train_vae_cli_writes_checkpoint_summary_and_tensorboard(rollouts, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    tv.add_arguments(parser)
    out = tmp_path / "vae"
    args = parser.parse_args(["--data", str(rollouts), "--out", str(out), "--preset", "debug",
                              "--vae.epochs", "2", "--vae.batch-size", "16",
                              "--vae.val-episodes", "1", "--vae.max-frames-per-epoch", "48",
                              "--device", "cpu", "--no-progress"])
    cfg = tv.config_from(args)
    assert cfg == replace(get_preset("debug").vae, epochs=2, batch_size=16,
                          max_frames_per_epoch=48)
    assert tv.run(args) == 0

    vae, ckpt = load_vae(out / "vae.pt")
    assert ckpt["kind"] == "vae" and ckpt["config"] == json.loads(
        (out / "config.json").read_text())["config"]
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * 3  # 48 frames a epoch, batches of 16
    done = json.loads((out / "done.json").read_text())
    assert done["epochs"] == 2 and done["frames"] == 96 and done["img_per_s"] > 0
    assert np.isfinite(done["final_val_loss"]) and done["val_episodes"] == 1

    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"vae/loss", "vae/recon", "vae/kl", "vae/val_loss", "vae/val_recon", "vae/val_kl",
            "time/img_per_s"} <= set(tags["scalars"])
    assert {"vae/reconstructions", "vae/prior_samples"} <= set(tags["images"])
    val = events.Scalars("vae/val_loss")
    assert [e.step for e in val] == [3, 6]
    assert val[-1].value == pytest.approx(done["final_val_loss"], rel=1e-5)
    grid = events.Images("vae/reconstructions")
    assert len(grid) == 2 and (grid[0].height, grid[0].width) == (128, 8 * 64)
    assert (out / "tb" / "scalars.csv").is_file()

    # Finished: rerunning does nothing; another config in the same folder is refused.
    before = (out / "vae.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert tv.run(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert (out / "vae.pt").stat().st_mtime_ns == before
    with pytest.raises(RunConfigMismatch, match="lr"):
        train(rollouts, out, replace(cfg, lr=0.5))


class Interrupt(Exception):
    """Stands for a crash or Ctrl-C in the middle of training."""


def interrupt_at(monkeypatch, step: int) -> None:
    """Make training stop just before its ``step``-th optimizer step (0-based)."""
    real = tv.check_finite

    def check(value, what, at, checkpoint=None):
        if at == step:
            raise Interrupt
        real(value, what, at, checkpoint)

    monkeypatch.setattr(tv, "check_finite", check)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    from conftest import _write_rollouts

    root = tmp_path_factory.mktemp("uninterrupted")
    data = _write_rollouts(root / "rollouts", lengths=LENGTHS, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every test here (this runs before the autouse fixture)
    try:
        ckpt = load_checkpoint(train(data, root / "vae"))
    finally:
        torch.set_num_threads(threads)
    return {"data": data, "ckpt": ckpt}


@pytest.mark.slow
@pytest.mark.parametrize("crash_step, checkpoint_every_s", [
    (12, 1e9),   # in epoch 3: resumes from the end-of-epoch-2 checkpoint
    (7, 0.0),    # in epoch 2, checkpoints after every step: resumes inside the epoch
])
def test_resumed_run_equals_uninterrupted(uninterrupted, tmp_path, monkeypatch, crash_step,
                                          checkpoint_every_s, capsys):
    out = tmp_path / "vae"
    data = uninterrupted["data"]
    with monkeypatch.context() as m:
        interrupt_at(m, crash_step)
        with pytest.raises(Interrupt):
            train(data, out, checkpoint_every_s=checkpoint_every_s)
    partial = load_checkpoint(out / "vae.pt")
    assert not (out / "done.json").exists()
    if checkpoint_every_s:
        assert (partial["epoch"], partial["step"]) == (2, 10)
    else:
        assert (partial["epoch"], partial["step"]) == (1, 7)
        assert partial["extra"]["progress"]["position"] == 2 * 16

    train(data, out, checkpoint_every_s=checkpoint_every_s)
    assert "resuming" in capsys.readouterr().out
    resumed, expected = load_checkpoint(out / "vae.pt"), uninterrupted["ckpt"]
    assert resumed["step"] == expected["step"] == 15
    for name, tensor in expected["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    exp_adam = expected["optimizer"]["state"]
    for key, state in resumed["optimizer"]["state"].items():
        assert all(torch.equal(state[k], exp_adam[key][k]) for k in state)
    assert torch.equal(resumed["extra"]["noise_rng"], expected["extra"]["noise_rng"])
    assert resumed["extra"]["progress"]["val"] == expected["extra"]["progress"]["val"]


def test_resume_refuses_changed_data(rollouts, tmp_path, monkeypatch):
    out = tmp_path / "vae"
    with monkeypatch.context() as m:
        interrupt_at(m, 7)
        with pytest.raises(Interrupt):
            train(rollouts, out)
    train_eps, _ = tv.split_episodes(rollouts, 1)
    (rollouts / "manifest.jsonl").write_text(
        "\n".join(json.dumps(e) for e in train_eps) + "\n")  # the held-out episode is gone
    with pytest.raises(ValueError, match="differ"):
        train(rollouts, out, cfg=replace(CFG, val_episodes=1))


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(rollouts, tmp_path, monkeypatch):
    calls = {"train": 0}
    real = tv.vae_loss

    def loss_going_nan(out, x, kl_tolerance):
        losses = real(out, x, kl_tolerance)
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 7:  # second step of epoch 2
                return losses._replace(loss=losses.loss * float("nan"))
        return losses

    monkeypatch.setattr(tv, "vae_loss", loss_going_nan)
    out = tmp_path / "vae"
    with pytest.raises(FloatingPointError, match="step 6; the last good checkpoint, .*vae.pt, is kept"):
        train(rollouts, out)
    ckpt = load_checkpoint(out / "vae.pt")
    assert ckpt["epoch"] == 1 and not (out / "done.json").exists()
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_corrupt_shard_is_named_or_skipped(rollouts, tmp_path):
    bad = rollouts / "ep_000002.npz"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(ShardError, match="ep_000002.npz"):
        train(rollouts, tmp_path / "a", replace(CFG, epochs=1))
    with pytest.warns(UserWarning, match="ep_000002.npz"):
        train(rollouts, tmp_path / "b", replace(CFG, epochs=1), skip_corrupt=True)
    assert json.loads((tmp_path / "b" / "done.json").read_text())["frames"] == 60
