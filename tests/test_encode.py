"""`worldmodels encode`: rollouts -> per-frame mu/logvar with a trained V."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import worldmodels.commands.encode as enc
from worldmodels.checkpoint import checkpoint_sha256, save_checkpoint
from worldmodels.config import VAEConfig
from worldmodels.data import ShardError, read_manifest, read_shard
from worldmodels.runs import RunConfigMismatch
from worldmodels.utils import sha256_file
from worldmodels.vae import ConvVAE, frames_to_tensor

LENGTHS = (12, 9, 15, 7)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_vae(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    vae = ConvVAE(z_dim=8)
    return save_checkpoint(path, kind="vae", config=asdict(VAEConfig(z_dim=8)),
                           model=vae.state_dict())


@pytest.fixture
def rollouts(tmp_path, make_rollouts) -> Path:
    return make_rollouts(tmp_path / "rollouts", lengths=LENGTHS, seed=2)


def encode(data: Path, vae: Path, out: Path, **kwargs) -> Path:
    kwargs.setdefault("batch_size", 10)  # batches run across episode boundaries
    return enc.encode_rollouts(data, vae, out, device="cpu", progress=False, **kwargs)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float16", 1e-3)])
def test_encode_matches_a_direct_forward_pass(rollouts, tmp_path, dtype, tolerance):
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    out = encode(rollouts, vae_path, tmp_path / "latents", dtype=dtype)

    torch.manual_seed(0)
    vae = ConvVAE(z_dim=8).eval()
    entries = read_manifest(rollouts)
    latents = read_manifest(out)
    assert [e["file"] for e in latents] == [e["file"] for e in entries]
    for entry, latent in zip(entries, latents):
        rollout = read_shard(rollouts / entry["file"])
        shard = read_shard(out / latent["file"], kind="latent")
        with torch.inference_mode():
            mu, logvar = vae.encode(frames_to_tensor(torch.from_numpy(rollout["obs"])))
        assert shard["mu"].dtype == shard["logvar"].dtype == np.dtype(dtype)
        assert shard["mu"].shape == (entry["length"], 8)
        # float16 keeps 11 significant bits: relative error below 2**-11 ~ 5e-4.
        np.testing.assert_allclose(shard["mu"].astype(np.float32), mu.numpy(),
                                   rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(shard["logvar"].astype(np.float32), logvar.numpy(),
                                   rtol=tolerance, atol=tolerance)
        for key in ("action", "reward", "terminated", "truncated"):
            assert np.array_equal(shard[key], rollout[key]), key
        assert latent["sha256"] == sha256_file(out / latent["file"])
        assert latent["rollout_sha256"] == entry["sha256"]
        assert latent["vae_sha256"] == checkpoint_sha256(vae_path)   # each shard names its V
        assert {k: latent[k] for k in ("index", "seed", "length", "return")} == \
            {k: entry[k] for k in ("index", "seed", "length", "return")}

    record = json.loads((out / "encode.json").read_text())
    assert record["stage"] == "encode"
    assert record["config"] == {"vae_path": str(vae_path.resolve()),
                                "vae_sha256": sha256_file(vae_path), "z_dim": 8, "dtype": dtype}
    done = json.loads((out / "done.json").read_text())
    assert done["episodes"] == len(LENGTHS) and done["frames"] == sum(LENGTHS)


def test_encode_resumes_without_redoing_or_duplicating(rollouts, tmp_path, monkeypatch, capsys):
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    out = tmp_path / "latents"
    real_write = enc._write
    written = []

    def write_then_crash(out_dir, ep, vae_sha256):
        if len(written) == 2:
            raise KeyboardInterrupt
        real_write(out_dir, ep, vae_sha256)
        written.append(ep.entry["file"])

    with monkeypatch.context() as m:
        m.setattr(enc, "_write", write_then_crash)
        with pytest.raises(KeyboardInterrupt):
            encode(rollouts, vae_path, out)
    assert [e["file"] for e in read_manifest(out)] == written
    first = (out / written[0]).stat().st_mtime_ns

    encode(rollouts, vae_path, out)
    assert "2 of 4 episodes to encode" in capsys.readouterr().out
    latents = read_manifest(out)
    assert [e["index"] for e in latents] == [0, 1, 2, 3]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    assert (out / written[0]).stat().st_mtime_ns == first

    encode(rollouts, vae_path, out)
    assert f"encode: {out} is already finished (all 4 episodes" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))


def test_encode_refuses_another_vae_or_dtype(rollouts, tmp_path):
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    out = encode(rollouts, vae_path, tmp_path / "latents")
    other = make_vae(tmp_path / "other.pt", seed=1)
    with pytest.raises(RunConfigMismatch, match="vae_sha256"):
        encode(rollouts, other, out)
    with pytest.raises(RunConfigMismatch, match="dtype"):
        encode(rollouts, vae_path, out, dtype="float32")
    # The same V found at another path is the same V.
    copy = tmp_path / "copy" / "vae.pt"
    copy.parent.mkdir()
    copy.write_bytes(vae_path.read_bytes())
    encode(rollouts, copy, out)


def test_corrupt_shard_is_named_or_skipped(rollouts, tmp_path):
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    bad = rollouts / "ep_000001.npz"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="ep_000001.npz"):
        encode(rollouts, vae_path, tmp_path / "a")
    with pytest.warns(UserWarning, match="ep_000001.npz"):
        out = encode(rollouts, vae_path, tmp_path / "b", skip_corrupt=True)
    assert [e["index"] for e in read_manifest(out)] == [0, 2, 3]
    assert json.loads((out / "done.json").read_text())["skipped"] == ["ep_000001.npz"]


def test_cli_arguments(tmp_path, rollouts):
    parser = argparse.ArgumentParser()
    enc.add_arguments(parser)
    args = parser.parse_args(["--data", "r", "--vae", "v.pt", "--out", "l"])
    assert (args.dtype, args.batch_size, args.device, args.skip_corrupt) == \
        ("float16", 1000, "auto", False)
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    args = parser.parse_args(["--data", str(rollouts), "--vae", str(vae_path),
                              "--out", str(tmp_path / "l"), "--dtype", "float32",
                              "--batch-size", "16", "--device", "cpu", "--no-progress"])
    assert enc.run(args) == 0
    assert read_shard(tmp_path / "l" / "ep_000000.npz", kind="latent")["mu"].dtype == np.float32
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "r", "--vae", "v", "--out", "l", "--dtype", "int8"])


@pytest.mark.slow
def test_real_carracing_episodes_go_through_collect_train_vae_and_encode(tmp_path):
    from worldmodels.commands.collect import collect_rollouts
    from worldmodels.commands.train_vae import train_vae
    from worldmodels.config import CollectConfig, EnvConfig, get_preset

    rollouts = tmp_path / "rollouts"
    collect_rollouts(rollouts, CollectConfig(episodes=2, workers=1),
                     EnvConfig(max_steps=25), progress=False)
    vae_path = train_vae(rollouts, tmp_path / "vae", get_preset("debug").vae, device="cpu",
                         progress=False)
    out = encode(rollouts, vae_path, tmp_path / "latents")
    lengths = [e["length"] for e in read_manifest(rollouts)]
    assert [e["length"] for e in read_manifest(out)] == lengths and sum(lengths) == 50
    for entry in read_manifest(out):
        shard = read_shard(out / entry["file"], kind="latent")
        assert shard["mu"].shape == (entry["length"], 32)
        assert np.isfinite(shard["mu"]).all() and np.isfinite(shard["logvar"]).all()


def test_encode_refuses_to_write_into_a_data_or_model_folder(rollouts, tmp_path):
    """`encode --data X --out X`, or --out a folder of another stage, writes nothing there."""
    vae_path = make_vae(tmp_path / "vae.pt", seed=0)
    before = sorted(p.name for p in rollouts.iterdir())
    with pytest.raises(ValueError, match="rollouts folder itself"):
        encode(rollouts, vae_path, rollouts)
    model = tmp_path / "rnn"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"stage": "train-rnn", "config": {}}))
    with pytest.raises(RunConfigMismatch, match="holds a train-rnn run"):
        encode(rollouts, vae_path, model)
    assert sorted(p.name for p in rollouts.iterdir()) == before
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]
