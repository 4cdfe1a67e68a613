"""`worldmodels train-rnn`: sequences and masking, training, resume, V/M pairing, CLI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels import runs
from worldmodels.checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint
from worldmodels.commands import train_rnn as tr
from worldmodels.config import MDNRNNConfig
from worldmodels.data import append_manifest, shard_name, write_shard
from worldmodels.mdnrnn import load_mdnrnn

Z = 4
CFG = MDNRNNConfig(z_dim=Z, hidden_size=32, n_gaussians=3, seq_len=12, batch_size=4,
                   epochs=3, lr=3e-3, val_episodes=2, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def write_latents(folder: Path, n_episodes: int = 10, seed: int = 0, z_dim: int = Z,
                  vae_bytes: bytes = b"a V checkpoint") -> Path:
    """Tiny learnable latents: z_{t+1} = 0.8 z_t + 0.5 [a_t, 0], reward = z_t[0],
    episodes end (terminated) when z[0] exceeds 1.2 or after 20..40 steps (truncated)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    vae = folder.parent / "vae.pt"
    vae.write_bytes(vae_bytes)
    for i in range(n_episodes):
        limit = int(rng.integers(20, 41))
        z = [rng.normal(size=z_dim) * 0.3]
        actions = []
        for t in range(limit):
            a = rng.uniform(-1, 1, size=3)
            actions.append(a)
            nxt = 0.8 * z[-1]
            nxt[:3] += 0.5 * a
            if t == limit - 1 or z[-1][0] > 1.2:
                break
            z.append(nxt)
        mu = np.array(z, np.float32)
        T = len(mu)
        terminated = np.zeros(T, bool)
        terminated[-1] = mu[-1, 0] > 1.2
        arrays = {"mu": mu.astype(np.float16), "logvar": np.full((T, z_dim), -4.0, np.float16),
                  "action": np.array(actions[:T], np.float32), "reward": mu[:, 0].copy(),
                  "terminated": terminated, "truncated": ~terminated & (np.arange(T) == T - 1)}
        sha = write_shard(folder / shard_name(i), arrays, kind="latent")
        append_manifest(folder, {"index": i, "file": shard_name(i), "length": T, "sha256": sha})
    runs.start_run(folder, {"vae_path": str(vae), "vae_sha256": checkpoint_sha256(vae),
                            "z_dim": z_dim, "dtype": "float16"}, "encode",
                   filename=runs.ENCODE_JSON)
    return folder


# ---------------------------------------------------------------- sequences and masking

def test_sequences_cut_episodes_into_transition_chunks():
    # episodes of 5, 1 and 9 frames (4, 0 and 8 z transitions), chunks of 4 transitions
    seqs = tr.make_sequences(np.array([0, 5, 6]), np.array([5, 1, 9]), seq_len=4)
    assert seqs.start.tolist() == [0, 5, 6, 10]
    assert seqs.n_z.tolist() == [4, 0, 4, 4]
    # the last chunk of an episode carries its final step (reward/done, no next z)
    assert seqs.n_inputs.tolist() == [5, 1, 4, 5]
    assert seqs.last.tolist() == [4, 5, 14, 14]
    # 1000 frames with seq_len 999: exactly one sequence of 1000 inputs, 999 z targets
    whole = tr.make_sequences(np.array([0]), np.array([1000]), seq_len=999)
    assert whole.n_inputs.tolist() == [1000] and whole.n_z.tolist() == [999]


def test_sequences_cover_every_step_once_within_one_episode():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 60, size=30)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    seqs = tr.make_sequences(starts, lengths, seq_len=7)
    episode_of = np.repeat(np.arange(30), lengths)
    inputs, z_steps = [], []
    for s, n, nz, last in zip(*(t.tolist() for t in seqs)):
        steps = np.arange(s, s + n)
        assert (episode_of[steps] == episode_of[s]).all()          # never spans two episodes
        assert last == starts[episode_of[s]] + lengths[episode_of[s]] - 1
        assert n <= 8 and nz <= 7
        inputs += steps.tolist()
        z_steps += steps[:nz].tolist()
    assert sorted(inputs) == list(range(lengths.sum()))            # every step once
    ends = set((starts + lengths - 1).tolist())
    assert sorted(z_steps) == [t for t in range(lengths.sum()) if t not in ends]


def _flat_data(lengths):
    """Latents whose values name their step: mu[t] = action[t, 0] = t, logvar ~ -inf."""
    n = sum(lengths)
    t = torch.arange(n, dtype=torch.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    terminated = torch.zeros(n, dtype=torch.bool)
    terminated[torch.from_numpy(starts + np.array(lengths) - 1)] = True
    return tr.LatentData(t[:, None].repeat(1, Z), torch.full((n, Z), -60.0),
                         t[:, None].repeat(1, 3), t.clone(), terminated, starts,
                         np.array(lengths))


def test_batch_reads_only_its_own_episode_and_masks_the_rest():
    data = _flat_data([6, 3, 11])
    seqs = tr.make_sequences(data.starts, data.lengths, seq_len=4)
    batch = tr.make_batch(data, seqs)
    for row in range(len(seqs.start)):
        s, n, nz = (int(x[row]) for x in seqs[:3])
        last = int(seqs.last[row])
        assert batch.mask[row].tolist() == [j < n for j in range(batch.mask.shape[1])]
        assert batch.z_mask[row].tolist() == [j < nz for j in range(batch.mask.shape[1])]
        steps = torch.arange(s, s + n, dtype=torch.float32)
        torch.testing.assert_close(batch.z[row, :n, 0], steps)
        torch.testing.assert_close(batch.action[row, :n, 0], steps)
        torch.testing.assert_close(batch.z_next[row, :nz, 0], steps[:nz] + 1)
        assert batch.done[row, :n].tolist() == [t == last for t in range(s, s + n)]
        # nothing in the row (padding included) comes from outside the episode
        assert batch.z[row].max() <= last and batch.z_next[row].max() <= last


def test_padding_and_data_after_the_episode_end_do_not_touch_the_loss():
    torch.manual_seed(0)
    cfg = replace(CFG, seq_len=5)
    model = tr.build_model(cfg)
    data = _flat_data([8, 4])
    data = data._replace(mu=data.mu / 10, action=data.action / 10)
    seqs = tr.make_sequences(data.starts, data.lengths, cfg.seq_len)
    batch = tr.make_batch(data, seqs)
    leaves = {k: getattr(batch, k).clone().requires_grad_() for k in ("z", "action", "z_next",
                                                                     "reward")}
    loss = tr.batch_loss(model, batch._replace(**leaves), cfg).loss
    loss.backward()
    pad = ~batch.mask
    assert pad.any() and (batch.mask & ~batch.z_mask).any()
    for name in ("z", "action", "reward"):
        assert (leaves[name].grad[pad] == 0).all(), name
    assert (leaves["z_next"].grad[~batch.z_mask] == 0).all()
    assert (leaves["z_next"].grad[batch.z_mask] != 0).any()
    # garbage (even NaN) in padded steps, and other values in the next episode, change nothing
    noisy = batch._replace(z=torch.where(pad[..., None], torch.nan, batch.z),
                           z_next=torch.where(~batch.z_mask[..., None], 1e6, batch.z_next),
                           reward=torch.where(pad, torch.nan, batch.reward))
    assert tr.batch_loss(model, noisy, cfg).loss.item() == loss.item()
    first = tr.subset(seqs, torch.tensor([0, 1]))   # the first episode's chunks
    changed = data._replace(mu=data.mu.clone(), action=data.action.clone())
    changed.mu[8:] = 5.0
    changed.action[8:] = -5.0
    a = tr.batch_loss(model, tr.make_batch(data, first), cfg).loss
    b = tr.batch_loss(model, tr.make_batch(changed, first), cfg).loss
    assert a.item() == b.item()


def test_reward_clip_bounds_the_reward_m_learns():
    torch.manual_seed(0)
    cfg = replace(CFG, seq_len=5)
    model = tr.build_model(cfg)
    data = _flat_data([8, 4])
    batch = tr.make_batch(data, tr.make_sequences(data.starts, data.lengths, cfg.seq_len))
    spiked = batch._replace(reward=torch.where(batch.mask & (torch.rand_like(batch.reward) < 0.3),
                                               torch.tensor(-100.0), batch.reward))
    assert (spiked.reward[spiked.mask] == -100).any()
    clipped = tr.batch_loss(model, spiked, replace(cfg, reward_clip=5.0)).reward_mse
    by_hand = tr.batch_loss(model, spiked._replace(reward=spiked.reward.clamp(-5, 5)), cfg)
    assert clipped.item() == pytest.approx(by_hand.reward_mse.item())
    assert tr.batch_loss(model, spiked, cfg).reward_mse.item() > 10 * clipped.item()
    # rewards inside the bounds are learnt as they are
    assert tr.batch_loss(model, batch, replace(cfg, reward_clip=1e3)).reward_mse.item() == \
        tr.batch_loss(model, batch, cfg).reward_mse.item()
    with pytest.raises(ValueError, match="reward_clip"):
        replace(cfg, reward_clip=-1.0)



def test_spread_rewards_keeps_each_episodes_return_and_stays_inside_it():
    lengths = np.array([30, 5, 12])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    reward = torch.full((int(lengths.sum()),), -0.1)
    reward[15] = 3.5      # a tile in the middle of episode 0
    reward[1] = 3.5       # one at its start: the window is cut there
    reward[29] = -5.0     # its last step (a clipped playfield exit)
    reward[32] = 7.0      # episode 1 is shorter than the window
    out = tr.spread_rewards(reward, starts, lengths, window=9)
    for a, n in zip(starts, lengths):
        assert out[a:a + n].sum().item() == pytest.approx(reward[a:a + n].sum().item(), abs=1e-5)
    # the spike in the middle: 1/9 of it on each of the 9 steps around step 15, nothing beyond
    bump = out[:30] - tr.spread_rewards(torch.where(torch.arange(30) == 15, -0.1, reward[:30]),
                                        starts[:1], lengths[:1], window=9)
    assert torch.allclose(bump[11:20], torch.full((9,), 3.6 / 9))
    assert bump[:11].abs().max() < 1e-6 and bump[20:].abs().max() < 1e-6
    # episode 1 (5 steps) shares its own rewards evenly, episode 2 receives none of them
    assert torch.allclose(out[30:35], torch.full((5,), (7.0 - 0.4) / 5))
    alone = tr.spread_rewards(reward[35:], np.array([0]), lengths[2:], window=9)
    assert torch.allclose(out[35:], alone)
    # far from the episode's ends a constant reward stays what it was
    assert torch.allclose(out[8:11], torch.full((3,), -0.1))
    assert out.dtype == torch.float32
    assert tr.spread_rewards(reward, starts, lengths, window=1) is reward


def test_reward_smooth_is_what_m_learns(tmp_path, monkeypatch):
    latents = write_latents(tmp_path / "latents", n_episodes=6)
    seen = []
    loss = tr.batch_loss
    monkeypatch.setattr(tr, "batch_loss", lambda m, b, c: seen.append(b) or loss(m, b, c))
    cfg = replace(CFG, epochs=1, val_episodes=1, batch_size=100, seq_len=999)
    for smooth in (0, 7):
        seen.clear()
        tr.train_rnn(latents, tmp_path / f"rnn{smooth}", replace(cfg, reward_smooth=smooth),
                     device="cpu", progress=False)
        rewards = [b.reward[b.mask] for b in seen[:1]]  # the training batch: 5 whole episodes
        if smooth == 0:
            raw = rewards[0]
        else:
            smoothed = rewards[0]
    assert smoothed.shape == raw.shape and not torch.allclose(smoothed, raw)
    assert smoothed.sum().item() == pytest.approx(raw.sum().item(), rel=1e-4)
    assert smoothed.std() < raw.std()
    with pytest.raises(ValueError, match="reward_smooth"):
        replace(cfg, reward_smooth=-1)


# ---------------------------------------------------------------- training

def _events(tb_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in tb_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def test_train_rnn_writes_checkpoint_logs_and_learns(tmp_path):
    latents = write_latents(tmp_path / "latents", n_episodes=12)
    cfg = replace(CFG, epochs=6)
    path = tr.train_rnn(latents, tmp_path / "rnn", cfg, device="cpu", progress=False)
    assert path == tmp_path / "rnn" / "mdnrnn.pt"
    done = runs.read_done(tmp_path / "rnn")
    assert done["epochs"] == 6 and done["train_episodes"] == 10
    ckpt = load_checkpoint(path, kind="mdnrnn")
    assert ckpt["config"]["hidden_size"] == 32 and ckpt["epoch"] == 6
    assert ckpt["parents"]["vae_sha256"] == checkpoint_sha256(tmp_path / "vae.pt")
    assert ckpt["extra"]["vae_path"] == str(tmp_path / "vae.pt")
    init = ckpt["extra"]["initial_mu"]
    assert init.dtype == torch.float32 and init.shape == (10, Z)
    assert ckpt["extra"]["initial_logvar"].shape == (10, Z)
    first = np.load(latents / shard_name(0))["mu"][0].astype(np.float32)
    np.testing.assert_array_equal(init[0].numpy(), first)
    tags = _events(tmp_path / "rnn" / "tb")
    for name in tr.LOSS_TAGS:
        assert f"mdnrnn/{name}" in tags and f"mdnrnn/val_{name}" in tags
    assert "time/steps_per_s" in tags
    rows = [line.split(",") for line in
            (tmp_path / "rnn" / "tb" / "scalars.csv").read_text().splitlines()[1:]]
    val = [float(v) for _, tag, v in rows if tag == "mdnrnn/val_loss"]
    train = [float(v) for _, tag, v in rows if tag == "mdnrnn/loss"]
    assert len(val) == 6
    assert val[-1] < val[0] - 0.5 and np.mean(train[-3:]) < np.mean(train[:3]) - 0.5
    # M loads against its V, and only against its V
    model, _ = load_mdnrnn(path, vae_path=tmp_path / "vae.pt")
    assert model.hidden_size == 32
    other = tmp_path / "other_vae.pt"
    other.write_bytes(b"another V")
    with pytest.raises(CheckpointError, match="different vae"):
        load_mdnrnn(path, vae_path=other)
    # a finished run is reported and returned, not redone
    mtime = path.stat().st_mtime_ns
    assert tr.train_rnn(latents, tmp_path / "rnn", cfg, device="cpu", progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    # another config in the same folder is refused
    with pytest.raises(runs.RunConfigMismatch, match="hidden_size"):
        tr.train_rnn(latents, tmp_path / "rnn", replace(cfg, hidden_size=16), device="cpu",
                     progress=False)


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    latents = write_latents(tmp_path / "latents", n_episodes=8)
    cfg = replace(CFG, epochs=3)
    full = tr.train_rnn(latents, tmp_path / "full", cfg, device="cpu", progress=False)

    real_save = tr.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        tr.train_rnn(latents, tmp_path / "cut", cfg, device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "cut" / "mdnrnn.pt")["epoch"] == 1
    assert not runs.is_done(tmp_path / "cut")
    monkeypatch.setattr(tr, "save_checkpoint", real_save)
    resumed = tr.train_rnn(latents, tmp_path / "cut", cfg, device="cpu", progress=False)

    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert (a["step"], a["epoch"]) == (b["step"], b["epoch"])
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k in ("gmm_nll", "val_loss"):
        assert a["extra"]["metrics"][k] == b["extra"]["metrics"][k]
    assert torch.equal(a["extra"]["noise_rng"], b["extra"]["noise_rng"])


def test_fine_tuning_starts_from_the_given_m_and_refuses_another_shape_or_v(tmp_path):
    latents = write_latents(tmp_path / "latents", n_episodes=8)
    base = tr.train_rnn(latents, tmp_path / "base", replace(CFG, epochs=2), device="cpu",
                        progress=False)
    # With a vanishing learning rate, the fine-tuned M is the M it started from.
    still = replace(CFG, epochs=1, lr=1e-12)
    tuned = tr.train_rnn(latents, tmp_path / "tuned", still, device="cpu", progress=False,
                         init=base)
    fresh = tr.train_rnn(latents, tmp_path / "fresh", still, device="cpu", progress=False)
    a, b, c = (load_checkpoint(p)["model"] for p in (base, tuned, fresh))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert any(not torch.allclose(c[k], a[k]) for k in a)
    assert runs.read_json(tmp_path / "tuned" / "config.json")["config"]["init_sha256"] == \
        checkpoint_sha256(base)
    # another init in the same folder is another run
    with pytest.raises(runs.RunConfigMismatch, match="init_sha256"):
        tr.train_rnn(latents, tmp_path / "tuned", still, device="cpu", progress=False,
                     init=fresh)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        tr.train_rnn(latents, tmp_path / "x", still, device="cpu", progress=False,
                     init=tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="shape"):
        tr.train_rnn(latents, tmp_path / "wide", replace(still, hidden_size=16), device="cpu",
                     progress=False, init=base)
    # an M of 0.1.0 (no model_args in the checkpoint: the shape comes from its config)
    old = torch.load(base, weights_only=True)
    del old["model_args"]
    torch.save(old, tmp_path / "old.pt")
    tr.train_rnn(latents, tmp_path / "from_old", still, device="cpu", progress=False,
                 init=tmp_path / "old.pt")
    for k, v in load_checkpoint(tmp_path / "from_old" / "mdnrnn.pt")["model"].items():
        torch.testing.assert_close(v, a[k], rtol=0, atol=1e-6)
    other = write_latents(tmp_path / "o" / "latents", n_episodes=8, vae_bytes=b"another V")
    with pytest.raises(CheckpointError, match="another V"):
        tr.train_rnn(other, tmp_path / "other", still, device="cpu", progress=False, init=base)


def test_bad_latent_folders_are_refused(tmp_path):
    latents = write_latents(tmp_path / "latents", n_episodes=3)
    with pytest.raises(ValueError, match="z_dim 4.*--rnn.z-dim 4"):
        tr.train_rnn(latents, tmp_path / "a", replace(CFG, z_dim=8), device="cpu",
                     progress=False)
    with pytest.raises(ValueError, match="leaves none for training"):
        tr.train_rnn(latents, tmp_path / "b", replace(CFG, val_episodes=3), device="cpu",
                     progress=False)
    # A shard whose manifest entry names another V (a folder merged by hand) is refused.
    lines = (latents / "manifest.jsonl").read_text().splitlines()
    entry = json.loads(lines[1])
    entry["vae_sha256"] = "f" * 64
    (latents / "manifest.jsonl").write_text("\n".join([lines[0], json.dumps(entry), lines[2]]) + "\n")
    with pytest.raises(ValueError, match="1 shards were encoded by another V.*ep_000001"):
        tr.train_rnn(latents, tmp_path / "v", CFG, device="cpu", progress=False)
    record = json.loads((latents / runs.ENCODE_JSON).read_text())
    del record["config"]["vae_sha256"]
    (latents / runs.ENCODE_JSON).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="vae_sha256"):
        tr.train_rnn(latents, tmp_path / "c", CFG, device="cpu", progress=False)
    (latents / runs.ENCODE_JSON).unlink()
    with pytest.raises(FileNotFoundError, match="worldmodels encode"):
        tr.train_rnn(latents, tmp_path / "d", CFG, device="cpu", progress=False)


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    latents = write_latents(tmp_path / "latents", n_episodes=4)
    shard = latents / shard_name(0)
    arrays = dict(np.load(shard))
    arrays["reward"][3] = np.nan
    sha = write_shard(shard, arrays, kind="latent")
    append_manifest(latents, {"index": 0, "file": shard.name, "sha256": sha})  # replaces entry 0
    with pytest.raises(FloatingPointError, match="mdnrnn loss .*no checkpoint had been written yet"):
        tr.train_rnn(latents, tmp_path / "rnn", CFG, device="cpu", progress=False)
    assert not (tmp_path / "rnn" / "mdnrnn.pt").exists()


def test_cli_parser_from_the_module_alone(tmp_path, capsys):
    latents = write_latents(tmp_path / "latents", n_episodes=3)
    parser = argparse.ArgumentParser()
    tr.add_arguments(parser)
    args = parser.parse_args(["--data", str(latents), "--out", str(tmp_path / "rnn"),
                              "--preset", "debug", "--rnn.z-dim", str(Z),
                              "--rnn.hidden-size", "8", "--rnn.epochs", "1",
                              "--no-rnn.predict-done", "--device", "cpu", "--no-progress"])
    assert tr.run(args) == 0
    ckpt = load_checkpoint(tmp_path / "rnn" / "mdnrnn.pt", kind="mdnrnn")
    assert ckpt["config"]["predict_done"] is False and ckpt["config"]["hidden_size"] == 8
    assert ckpt["config"]["seq_len"] == 32   # from the debug preset
    assert str(tmp_path / "rnn" / "mdnrnn.pt") in capsys.readouterr().out
    # several folders, and a fine-tune from the M above
    more = write_latents(tmp_path / "more" / "latents", n_episodes=3, seed=1)
    args = parser.parse_args(["--data", str(latents), str(more), "--out", str(tmp_path / "two"),
                              "--init", str(tmp_path / "rnn" / "mdnrnn.pt"),
                              "--preset", "debug", "--rnn.z-dim", str(Z),
                              "--rnn.hidden-size", "8", "--rnn.epochs", "1",
                              "--no-rnn.predict-done", "--device", "cpu", "--no-progress"])
    assert tr.run(args) == 0
    record = runs.read_json(tmp_path / "two" / "config.json")["config"]
    assert [(tmp_path / "two" / d).resolve() for d in record["data"]] == [
        latents.resolve(), more.resolve()]   # named relative to M's folder
    assert record["init_sha256"] == checkpoint_sha256(tmp_path / "rnn" / "mdnrnn.pt")


def test_reward_calibration_script_reads_what_m_learnt(tmp_path, capsys):
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("reward_calibration",
                                                  root / "scripts" / "reward_calibration.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    latents = write_latents(tmp_path / "latents", n_episodes=12)
    trained = tr.train_rnn(latents, tmp_path / "rnn", replace(CFG, epochs=8), device="cpu",
                           progress=False)
    fresh = tr.train_rnn(latents, tmp_path / "fresh", replace(CFG, epochs=1, lr=1e-12),
                         device="cpu", progress=False)
    good = script.calibration(trained, latents, 12)
    bad = script.calibration(fresh, latents, 12)
    assert good["episodes"] == 12
    # reward = z[0]: a trained M's rewards follow the real ones, step by step and summed
    assert good["corr_per_step"] > 0.8 and good["corr_over_episodes"] > 0.8
    assert abs(good["m_return_mean"] - good["real_return_mean"]) < \
        abs(bad["m_return_mean"] - bad["real_return_mean"])
    assert script.main(["--rnn", str(trained), "--data", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
