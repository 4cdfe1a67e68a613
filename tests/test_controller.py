"""C: parameters and action mapping, the World Models agent, and train-controller.

Tiny random V and M checkpoints stand in for trained ones (``tiny_world_models``); they are
also used by ``test_evaluate.py``.
"""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from worldmodels.agents.world_models_agent import WorldModelsAgent

from worldmodels import runs
from worldmodels.checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint
from worldmodels.controller import Controller, map_action
from worldmodels.testing import H, Z, save_controller, save_vae, tiny_world_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_world_models(tmp_path_factory.mktemp("models"))


# ----------------------------------------------------------------------------- C itself

def test_parameter_count_and_action_mapping():
    c = Controller(32, 256)
    assert c.n_params == 867 == sum(p.numel() for p in c.parameters())
    raw = torch.tensor([[-1.0, -1.0, -0.5], [1.0, 1.0, 1.0], [0.3, 0.0, 0.4]])
    expected = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.3, 0.5, 0.4]])
    torch.testing.assert_close(map_action(raw), expected)
    c.set_flat(np.random.default_rng(0).normal(0, 10, 867))
    a = c(torch.randn(500, 32), torch.randn(500, 256))
    assert a[:, 0].min() >= -1 and a[:, 0].max() <= 1
    assert a[:, 1:].min() >= 0 and a[:, 1:].max() <= 1
    assert (a[:, 2] == 0).any() and (a[:, 0] < 0).any()   # brake clipped, steering both ways


def test_a_c_that_reads_the_lstm_cell():
    """features "zch": [z, h, c] in, (Z + 2H) x A + A parameters (the paper's Doom C reads z,
    c and h); c is required, and its weights change the action."""
    c = Controller(64, 256, action_dim=1, action_map="thirds", features="zch")
    assert c.n_params == 64 + 2 * 256 + 1 == sum(p.numel() for p in c.parameters())
    assert c.model_args["features"] == "zch" and Controller(**c.model_args).n_params == c.n_params
    z, h, cell = torch.randn(50, 64), torch.randn(50, 256), torch.randn(50, 256)
    with pytest.raises(ValueError, match="pass c"):
        c(z, h)
    flat = np.zeros(c.n_params)
    flat[64 + 256:64 + 512] = 3.0  # only the c weights
    c.set_flat(flat)
    a = c(z, h, cell)
    torch.testing.assert_close(a, c(torch.zeros_like(z), torch.zeros_like(h), cell))
    assert set(a.flatten().tolist()) <= {-1.0, 0.0, 1.0} and len(set(a.flatten().tolist())) > 1
    with pytest.raises(ValueError, match="unknown features"):
        Controller(64, 256, features="hz")


def test_flat_round_trip():
    c = Controller(32, 256)
    flat = np.random.default_rng(1).normal(size=867).astype(np.float32)
    c.set_flat(flat)
    np.testing.assert_array_equal(c.get_flat(), flat)
    np.testing.assert_array_equal(c.fc.bias.detach().numpy(), flat[-3:])
    with pytest.raises(ValueError, match="867"):
        c.set_flat(np.zeros(866))


def test_batched_dream_fitness_equals_one_by_one(models):
    from worldmodels.dream import BatchedDream

    _, mdnrnn_path = models
    dream = BatchedDream.from_checkpoint(mdnrnn_path, "cpu", temperature=1.15, max_steps=30)
    params = torch.from_numpy(np.random.default_rng(2).normal(0, 1, (5, dream.n_params)))
    together = dream.evaluate(params, n_rollouts=3, seed=11)
    assert together.shape == (5, 3)
    one_by_one = torch.cat([dream.evaluate(p[None], n_rollouts=3, seed=11) for p in params])
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[1])   # the candidates do differ


# ----------------------------------------------------------------------------- the agent

def test_agent_acts_and_is_seeded(models, tmp_path):
    vae_path, mdnrnn_path = models
    ckpt = save_controller(tmp_path / "c.pt", vae_path, mdnrnn_path)
    agent = WorldModelsAgent.from_checkpoints(ckpt, seed=5)   # V and M paths from C's extra
    frames = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)

    def episode(seed):
        agent.reset(seed)
        return np.stack([agent.act(f) for f in frames])

    a, b, c = episode(1), episode(1), episode(2)
    assert a.dtype == np.float32 and a.shape == (6, 3)
    assert (a[:, 0] >= -1).all() and (a[:, 1:] >= 0).all() and (a <= 1).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)                 # z is sampled (the paper's default)
    assert set(agent.last) >= {"z", "mu", "h", "action", "next_z"}
    assert agent.reconstruction().shape == agent.prediction().shape == (64, 64, 3)
    assert agent.last["h"].abs().sum() > 0            # M's state moved on from zeros

    mu_agent = WorldModelsAgent.from_checkpoints(ckpt, use_mu=True)
    mu_agent.reset(1)
    x = mu_agent.act(frames[0])
    mu_agent.reset(2)
    np.testing.assert_array_equal(x, mu_agent.act(frames[0]))


def test_agent_refuses_mismatched_parents(models, tmp_path):
    vae_path, mdnrnn_path = models
    ckpt = save_controller(tmp_path / "c.pt", vae_path, mdnrnn_path)
    other_vae = save_vae(tmp_path / "other_vae.pt", seed=99)
    with pytest.raises(CheckpointError, match="different vae"):
        WorldModelsAgent.from_checkpoints(ckpt, vae_path=other_vae)
    _, other_m = tiny_world_models(tmp_path, seed=1)
    with pytest.raises(CheckpointError, match="different mdnrnn"):
        WorldModelsAgent.from_checkpoints(ckpt, mdnrnn_path=other_m)


# ----------------------------------------------------------------------------- train-controller

def train_args(vae, rnn, out, *extra) -> argparse.Namespace:
    """Parse train-controller's command line with the module's own parser."""
    from worldmodels.commands import train_controller

    parser = argparse.ArgumentParser()
    train_controller.add_arguments(parser)
    return parser.parse_args([
        "--vae", str(vae), "--rnn", str(rnn), "--out", str(out), "--preset", "debug",
        "--device", "cpu", "--no-progress", "--controller.popsize", "6",
        "--controller.rollouts-per-candidate", "2", "--controller.dream-max-steps", "25",
        "--controller.eval-every", "2", "--controller.eval-episodes", "1", "--env.max-steps", "15",
        "--controller.workers", "1", "--controller.seed", "3", *extra])


def test_train_in_dream_resumes_exactly(models, tmp_path, monkeypatch):
    from worldmodels.commands import train_controller
    from worldmodels.dream import BatchedDream

    vae, rnn = models
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_controller.run(train_args(vae, rnn, full, "--controller.generations", "4"))

    # Kill the second run during generation 3 (after generations 1-2 were checkpointed).
    real_evaluate, calls = BatchedDream.evaluate, []

    def dying_evaluate(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(self, *a, **kw)

    monkeypatch.setattr(BatchedDream, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_controller.run(train_args(vae, rnn, cut, "--controller.generations", "4"))
    assert load_checkpoint(cut / "controller.pt")["step"] == 2 and not runs.is_done(cut)
    monkeypatch.setattr(BatchedDream, "evaluate", real_evaluate)
    train_controller.run(train_args(vae, rnn, cut, "--controller.generations", "4"))

    a = load_checkpoint(full / "controller.pt", kind="controller")
    b = load_checkpoint(cut / "controller.pt", kind="controller")
    assert a["step"] == b["step"] == 4
    torch.testing.assert_close(a["model"], b["model"], rtol=0, atol=0)
    assert a["extra"]["es"]["fitness"].shape == (4, 6)
    torch.testing.assert_close(a["extra"]["es"]["fitness"], b["extra"]["es"]["fitness"], rtol=0, atol=0)
    assert a["extra"]["evals"] == b["extra"]["evals"] and len(a["extra"]["evals"]) == 2
    assert a["extra"]["best_real"] == b["extra"]["best_real"] is not None
    assert a["parents"] == {"vae_sha256": checkpoint_sha256(vae),
                            "mdnrnn_sha256": checkpoint_sha256(rnn)}
    assert a["extra"]["z_dim"] == Z and a["extra"]["hidden_size"] == H

    # The best controller loads as an agent; TensorBoard got every documented tag.
    assert (full / "controller_best.pt").exists() and runs.is_done(full)
    WorldModelsAgent.from_checkpoints(full / "controller_best.pt")
    tags = {line.split(",")[1] for line in (full / "tb" / "scalars.csv").read_text().splitlines()[1:]}
    assert tags >= {"es/fitness_best", "es/fitness_mean", "es/fitness_worst", "es/sigma",
                    "dream/return_mean", "eval/real_return_mean", "eval/real_return_std",
                    "time/generation_s"}

    # A finished run is not redone; another V or M for the same folder is refused.
    written = (full / "controller.pt").stat().st_mtime_ns
    train_controller.run(train_args(vae, rnn, full, "--controller.generations", "4"))
    assert (full / "controller.pt").stat().st_mtime_ns == written
    other_vae, other_rnn = tiny_world_models(tmp_path / "other", seed=1)
    with pytest.raises(runs.RunConfigMismatch, match="vae_sha256"):
        train_controller.run(train_args(other_vae, other_rnn, full,
                                        "--controller.generations", "4"))


def test_a_c_of_z_h_and_c_trains_in_the_dream_validates_and_evaluates(models, tmp_path):
    """--controller.features zch end to end: CMA-ES over [z, h, c] weights, real validation
    episodes in worker processes, the saved C rebuilt by the agent and by evaluate (which
    steps M on the agent's own c: its returns match the agent stepped here)."""
    from worldmodels.envs import make_env

    from worldmodels.commands import train_controller
    from worldmodels.commands.evaluate import evaluate_agent
    from worldmodels.config import EnvConfig
    from worldmodels.rollouts import run_episode
    from worldmodels.seeds import test_seeds

    vae, rnn = models
    out = tmp_path / "zch"
    train_controller.run(train_args(vae, rnn, out, "--controller.generations", "2",
                                    "--controller.features", "zch",
                                    "--controller.workers", "2"))
    ckpt = load_checkpoint(out / "controller_best.pt", kind="controller")
    assert ckpt["model_args"]["features"] == "zch" and ckpt["config"]["features"] == "zch"
    agent = WorldModelsAgent.from_checkpoints(out / "controller_best.pt")
    assert agent.controller.n_params == (Z + 2 * H) * 3 + 3
    assert np.abs(agent.controller.get_flat()[(Z + H) * 3:]).sum() > 0  # CMA moved the c part
    result = evaluate_agent(out / "controller_best.pt", episodes=2, workers=2,
                            env_cfg=EnvConfig(max_steps=15), progress=False)

    env = make_env(EnvConfig(max_steps=15))
    mine = []
    for s in test_seeds(2):
        agent.reset(s)
        mine.append(run_episode(env, agent, s)[0])
    env.close()
    np.testing.assert_allclose(result["returns"], mine, rtol=1e-6)


def test_train_in_real_env(models, tmp_path):
    from worldmodels.commands import train_controller

    vae, rnn = models
    out = tmp_path / "real"
    train_controller.run(train_args(vae, rnn, out, "--controller.mode", "real",
                                    "--controller.generations", "1", "--controller.popsize", "3",
                                    "--controller.rollouts-per-candidate", "1",
                                    "--controller.eval-every", "0"))
    ckpt = load_checkpoint(out / "controller.pt", kind="controller")
    fitness = ckpt["extra"]["es"]["fitness"]
    assert fitness.shape == (1, 3) and torch.isfinite(fitness).all()
    assert not (out / "controller_best.pt").exists()
    assert runs.read_done(out)["controller_best"] is None


def test_real_mode_training_episodes_stop_at_real_max_steps(models, tmp_path, monkeypatch):
    from worldmodels.commands import train_controller
    from worldmodels.rollouts import EpisodeRunner

    seen = []  # (the runner's env step limit, episode lengths) of every batch of episodes
    real_run = EpisodeRunner.run

    def recording_run(self, tasks, **kwargs):
        returns, lengths = real_run(self, tasks, **kwargs)
        seen.append((self.spec["env"]["max_steps"], sorted(set(lengths.tolist()))))
        return returns, lengths

    monkeypatch.setattr(EpisodeRunner, "run", recording_run)
    vae, rnn = models
    train_controller.run(train_args(vae, rnn, tmp_path / "real", "--controller.mode", "real",
                                    "--controller.generations", "2", "--controller.popsize", "3",
                                    "--controller.rollouts-per-candidate", "1",
                                    "--controller.real-max-steps", "6",
                                    "--controller.eval-every", "1"))
    # per generation: the candidates' 6-step episodes, then the CMA mean's full 15 steps
    assert seen == [(6, [6]), (15, [15])] * 2
    with pytest.raises(ValueError,
                       match=r"real_max_steps \(--controller\.real-max-steps\) must be >= 0"):
        train_controller.run(train_args(vae, rnn, tmp_path / "bad",
                                        "--controller.real-max-steps", "-1"))
