"""Shipped agents (worldmodels.zoo): export, checksums, and --agent in evaluate/play/dream."""

import json

import numpy as np
import pytest
import torch

from worldmodels.checkpoint import CheckpointError, load_checkpoint
from worldmodels.cli import main
from worldmodels.config import EnvConfig
from worldmodels.testing import save_controller, tiny_world_models
from worldmodels.zoo import export_agent, load_shipped


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    from worldmodels.commands.evaluate import evaluate_agent

    folder = tmp_path_factory.mktemp("zoo")
    vae, rnn = tiny_world_models(folder)
    c = save_controller(folder / "c.pt", vae, rnn)
    results = folder / "results.json"
    evaluate_agent(c, episodes=2, workers=1, env_cfg=EnvConfig(max_steps=20), out_path=results,
                   progress=False)
    agent = export_agent(c, folder / "tiny", "tiny", "a random tiny agent, for tests", results,
                         command="pytest", machine="CI")
    return agent, c


def test_export_stores_v_in_half_precision_and_records_the_score(shipped):
    agent, source = shipped
    assert load_checkpoint(agent.vae)["model"]["fc_mu.weight"].dtype == torch.float16
    m = agent.manifest
    assert m["label"] and m["score"]["episodes"] == 2 and m["score"]["command"] == "pytest"
    assert m["source"]["controller"] == str(source)
    assert set(m["files"]) == {"vae", "mdnrnn", "controller"}


def test_the_shipped_agent_acts_like_its_source(shipped):
    from worldmodels.agents.world_models_agent import WorldModelsAgent

    agent, source = shipped
    a = WorldModelsAgent.from_checkpoints(source, use_mu=True)
    b = WorldModelsAgent.from_checkpoints(agent.controller, agent.vae, agent.mdnrnn, use_mu=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        np.testing.assert_allclose(a.act(obs), b.act(obs), atol=2e-2)


def test_a_tampered_file_is_refused(shipped, tmp_path):
    import shutil

    agent, _ = shipped
    copy = tmp_path / "copy"
    shutil.copytree(agent.folder, copy)
    load_shipped(copy)
    data = bytearray((copy / "mdnrnn.pt").read_bytes())
    data[-100] ^= 1
    (copy / "mdnrnn.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="mdnrnn.pt has sha256 .* changed or damaged"):
        load_shipped(copy)
    with pytest.raises(FileNotFoundError, match="no shipped agent 'nope'"):
        load_shipped("nope")


def test_evaluate_play_and_dream_take_an_agent_without_a_run_folder(shipped, tmp_path, capsys):
    agent, _ = shipped
    out = tmp_path / "results.json"
    assert main(["evaluate", "--agent", str(agent.folder), "--eval.episodes", "2",
                 "--eval.workers", "1", "--env.max-steps", "20", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads(out.read_text())["summary"]["episodes"] == 2
    assert "a random tiny agent, for tests" in capsys.readouterr().out
    gif = tmp_path / "drive.gif"
    assert main(["play", "--agent", str(agent.folder), "--record", str(gif), "--max-steps", "10",
                 "--every", "5", "--panel-size", "32", "--device", "cpu"]) == 0
    assert gif.stat().st_size > 0
    assert main(["dream", "--agent", str(agent.folder), "--record", str(tmp_path / "d.gif"),
                 "--steps", "5", "--size", "32", "--device", "cpu"]) == 0
    assert main(["play", "--agent", str(agent.folder), "--controller", "x.pt",
                 "--record", str(gif)]) == 2
    assert "--agent gives the checkpoints; drop --controller" in capsys.readouterr().err


@pytest.mark.parametrize("name, env_id", [("carracing", "worldmodels/CarRacingFast-v3"),
                                           ("doom", "worldmodels/DoomTakeCover-v0")])
def test_the_shipped_agents_load_and_play_their_game(tmp_path, name, env_id):
    from worldmodels.zoo import available

    if name == "doom":
        pytest.importorskip("vizdoom")
    assert name in available()
    agent = load_shipped(name)                              # every sha256 checked
    assert agent.manifest["score"]["episodes"] == 100 and agent.manifest["label"]
    assert agent.manifest["score"]["env_id"] == env_id
    assert sum(f["bytes"] for f in agent.manifest["files"].values()) <= 12_000_000
    out = tmp_path / "r.json"
    assert main(["evaluate", "--agent", name, "--eval.episodes", "2",
                 "--eval.workers", "1", "--env.max-steps", "30", "--out", str(out),
                 "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["summary"]["episodes"] == 2 and result["env_id"] == env_id
