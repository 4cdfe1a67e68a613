"""The dream protocol: iterative rounds, agent rollouts, M on several rounds' latents, dropout
masks in the dream and in M's training, the exploit detector, and that no candidate's fitness
is ever a real-env return."""

import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from worldmodels.agents.world_models_agent import WorldModelsAgent

from worldmodels import runs, seeds
from worldmodels.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
from worldmodels.config import CollectConfig, ControllerConfig, EnvConfig, IterateConfig, MDNRNNConfig
from worldmodels.dream import BatchedDream, reference_dream
from worldmodels.mdnrnn import MDNRNN
from worldmodels.testing import H, Z, save_controller, tiny_preset, tiny_world_models
from worldmodels.utils import read_json

ENV = EnvConfig(max_steps=30)


@pytest.fixture(scope="module")
def agent_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agent")
    vae, rnn = tiny_world_models(folder)
    return vae, rnn, save_controller(folder / "c.pt", vae, rnn)


# --- collection by the agent ------------------------------------------------------------

def test_collect_with_the_agent_records_its_policy_and_refuses_another_controller(
        agent_models, tmp_path):
    from worldmodels.commands.collect import collect_rollouts, episode_policy
    from worldmodels.data import read_manifest

    vae, rnn, c = agent_models
    cfg = CollectConfig(episodes=4, workers=1, policy="agent", controller=str(c),
                        action_noise=0.2, brownian_share=0.5, seed=3)
    collect_rollouts(tmp_path / "r", cfg, ENV, progress=False)
    entries = read_manifest(tmp_path / "r")
    policies = [e["policy"] for e in entries]
    # Each episode's policy is drawn from its index alone, and both kinds occur here.
    assert policies == [episode_policy(i, cfg) for i in range(4)]
    assert set(policies) == {"agent", "brownian"}
    for e in entries:
        assert (e.get("controller_sha256") == checkpoint_sha256(c)) == (e["policy"] == "agent")
    record = read_json(tmp_path / "r" / "collect.json")["config"]
    assert record["controller_sha256"] == checkpoint_sha256(c) and record["action_noise"] == 0.2

    # Another C for the same folder is refused before anything is collected.
    other = save_controller(tmp_path / "c2.pt", vae, rnn, seed=5)
    with pytest.raises(runs.RunConfigMismatch, match="controller_sha256"):
        collect_rollouts(tmp_path / "r", replace(cfg, controller=str(other), episodes=5),
                         ENV, progress=False)
    with pytest.raises(ValueError, match="needs --collect.controller"):
        collect_rollouts(tmp_path / "x", replace(cfg, controller=""), ENV, progress=False)


def test_action_noise_changes_the_actions_and_the_episode_replays(agent_models):
    from worldmodels.commands.collect import run_episode

    _, _, c = agent_models
    cfg = CollectConfig(episodes=1, workers=1, policy="agent", controller=str(c), action_noise=0.0)
    env = replace(ENV, max_steps=20)
    clean = run_episode(0, cfg, env)["action"]
    noisy = run_episode(0, replace(cfg, action_noise=0.3), env)["action"]
    again = run_episode(0, replace(cfg, action_noise=0.3), env)["action"]
    np.testing.assert_array_equal(noisy, again)
    assert np.abs(noisy - clean).mean() > 0.05
    assert (noisy >= [-1, 0, 0]).all() and (noisy <= 1).all()


def test_action_noise_dims_leave_the_other_dimensions_to_c(agent_models, tmp_path):
    from worldmodels.agents.world_models_agent import NoisyAgentPolicy, WorldModelsAgent

    from worldmodels.commands.collect import collect_rollouts
    from worldmodels.data import read_manifest

    _, _, c = agent_models
    obs = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def first_action(noise, dims=None):
        policy = NoisyAgentPolicy(WorldModelsAgent.from_checkpoints(c), np.random.default_rng(0),
                                  noise, dims)
        policy.reset()
        return policy.act(obs)

    clean, noisy, steer_gas = first_action(0.0), first_action(0.3), first_action(0.3, (0, 1))
    assert abs(noisy[2] - clean[2]) > 1e-3 and abs(noisy[0] - clean[0]) > 1e-3
    np.testing.assert_array_equal(steer_gas[:2], noisy[:2])  # the same draw on steer and gas
    assert steer_gas[2] == clean[2]  # and C's own brake

    cfg = CollectConfig(episodes=2, workers=1, policy="agent", controller=str(c),
                        action_noise=0.3, action_noise_dims="0,1")
    collect_rollouts(tmp_path / "r", cfg, ENV, progress=False)
    assert all(e["action_noise_dims"] == "0,1" for e in read_manifest(tmp_path / "r"))
    assert read_json(tmp_path / "r" / "collect.json")["config"]["action_noise_dims"] == "0,1"
    with pytest.raises(runs.RunConfigMismatch, match="action_noise_dims"):  # not mixed in one folder
        collect_rollouts(tmp_path / "r", replace(cfg, action_noise_dims="", episodes=3), ENV,
                         progress=False)
    for bad in ("a", "0,0", "-1"):
        with pytest.raises(ValueError, match="action_noise_dims"):
            replace(cfg, action_noise_dims=bad)
    p = tiny_preset()
    with pytest.raises(ValueError, match="has 3 action dimensions"):
        replace(p, collect=replace(p.collect, action_noise_dims="3"))


def test_episode_offset_is_one_draw_per_episode_recorded_in_the_manifest(agent_models, tmp_path):
    from worldmodels.commands.collect import collect_rollouts, episode_offset, run_episode
    from worldmodels.data import read_manifest

    _, _, c = agent_models
    cfg = CollectConfig(episodes=3, workers=1, policy="agent", controller=str(c),
                        action_noise=0.0, action_noise_dims="1", episode_offset=0.3, seed=4)
    clean = replace(cfg, episode_offset=0.0)
    assert episode_offset(0, clean, 3) is None
    offsets = [episode_offset(i, cfg, 3) for i in range(3)]
    for o in offsets:
        assert o[0] == 0.0 and o[2] == 0.0 and o[1] != 0.0  # only on action_noise_dims
    assert len({o[1] for o in offsets}) == 3  # a new draw per episode
    # The episode's first action is C's own plus the offset (clipped); later ones differ from
    # C's own too, as the offset stays for the whole episode.
    env = replace(ENV, max_steps=20)
    own, shifted = run_episode(0, clean, env)["action"], run_episode(0, cfg, env)["action"]
    np.testing.assert_allclose(shifted[0], np.clip(own[0] + offsets[0], [-1, 0, 0], 1), atol=1e-6)
    assert (np.abs(shifted[:, 1] - own[:, 1]) > 1e-4).mean() > 0.5
    np.testing.assert_array_equal(shifted, run_episode(0, cfg, env)["action"])  # it replays

    collect_rollouts(tmp_path / "r", cfg, ENV, progress=False)
    entries = read_manifest(tmp_path / "r")
    for e, o in zip(entries, offsets):
        assert e["episode_offset"] == 0.3 and np.allclose(e["action_offset"], o)
    assert read_json(tmp_path / "r" / "collect.json")["config"]["episode_offset"] == 0.3
    with pytest.raises(runs.RunConfigMismatch, match="episode_offset"):  # not mixed in one folder
        collect_rollouts(tmp_path / "r", replace(clean, episodes=4), ENV, progress=False)
    with pytest.raises(ValueError, match="episode_offset"):
        replace(cfg, episode_offset=-0.1)


# --- M on several folders ------------------------------------------------------------------

def test_train_rnn_on_several_folders_refuses_latents_of_another_v(tmp_path, make_rollouts):
    from worldmodels.commands.encode import encode_rollouts
    from worldmodels.commands.train_rnn import train_rnn
    from worldmodels.testing import save_vae

    vae = save_vae(tmp_path / "vae.pt", 0)
    other = save_vae(tmp_path / "vae_other.pt", 1)
    make_rollouts(tmp_path / "r0", lengths=(12, 9, 15))
    make_rollouts(tmp_path / "r1", lengths=(10, 11), seed=1)
    encode_rollouts(tmp_path / "r0", vae, tmp_path / "l0", device="cpu", progress=False)
    encode_rollouts(tmp_path / "r1", vae, tmp_path / "l1", device="cpu", progress=False)
    encode_rollouts(tmp_path / "r1", other, tmp_path / "l1x", device="cpu", progress=False)
    cfg = MDNRNNConfig(z_dim=Z, hidden_size=8, n_gaussians=2, seq_len=5, batch_size=4,
                       epochs=1, val_episodes=1)
    path = train_rnn([tmp_path / "l0", tmp_path / "l1"], tmp_path / "m", cfg, device="cpu",
                     progress=False)
    done = runs.read_done(tmp_path / "m")
    assert done["train_episodes"] == 4  # 2 of r0 (its last is validation) + 2 of r1
    # named relative to M's folder (a moved run folder resumes)
    assert read_json(tmp_path / "m" / "config.json")["config"]["data"] == [
        os.path.join("..", d) for d in ("l0", "l1")]
    # Dreams start from the first frames of every training episode.
    assert load_checkpoint(path)["extra"]["initial_mu"].shape == (4, Z)
    with pytest.raises(ValueError, match="another V"):
        train_rnn([tmp_path / "l0", tmp_path / "l1x"], tmp_path / "m2", cfg, device="cpu",
                  progress=False)


# --- dropout ------------------------------------------------------------------------------

def tiny_m(**kw) -> MDNRNN:
    torch.manual_seed(0)
    return MDNRNN(z_dim=Z, hidden_size=H, n_gaussians=2, **kw).eval()


def test_dream_dropout_mask_is_fixed_within_an_episode_and_differs_between_episodes():
    m = tiny_m()
    dream = BatchedDream(m, torch.zeros(3, Z), torch.full((3, Z), -2.0), temperature=0.0,
                         dropout=0.5)
    z0 = torch.randn(4, Z)
    dream.reset(4, generator=7, z=z0)
    mask = dream._state.mask.clone()
    keep = 0.5
    assert mask.shape == (4, Z + H + 3)
    assert set(mask[:, :Z + H].unique().tolist()) == {0.0, 1 / keep}
    assert (mask[:, Z + H:] == 1).all()  # the action is never dropped
    assert not all(torch.equal(mask[0], mask[i]) for i in range(1, 4))

    # Two steps follow M with that same mask on [z, h] at both steps.
    state = m.initial_state(4)
    z = z0
    actions = torch.rand(2, 4, 3)
    for t in range(2):
        with torch.no_grad():
            ref = reference_dream(m, z, actions[t], state, temperature=0.0, mask=mask)
        dz, dh, _, _ = dream.step(actions[t])
        torch.testing.assert_close(dh, ref.h, rtol=1e-4, atol=1e-5)
        z, state = dz, ref.state
    dream.reset(4, generator=8, z=z0)
    assert not torch.equal(dream._state.mask, mask)


def test_dream_dropout_keeps_common_random_numbers():
    dream = BatchedDream(tiny_m(), torch.randn(3, Z), torch.full((3, Z), -2.0),
                         temperature=1.0, max_steps=15, dropout=0.2)
    params = torch.randn(3, dream.n_params) * 0.3
    together = dream.evaluate(params, 4, seed=2)
    one_by_one = torch.cat([dream.evaluate(p, 4, seed=2) for p in params])
    torch.testing.assert_close(together, one_by_one)
    plain = BatchedDream(tiny_m(), torch.randn(3, Z), torch.full((3, Z), -2.0),
                         temperature=1.0, max_steps=15)
    assert not torch.equal(plain.evaluate(params, 4, seed=2), together)


def test_m_dropout_masks_each_sequence_while_training_only():
    m = tiny_m(dropout=0.3).train()
    z, a = torch.randn(6, 5, Z), torch.rand(6, 5, 3)
    torch.manual_seed(1)
    out1, _ = m(z, a)
    torch.manual_seed(2)
    out2, _ = m(z, a)
    assert not torch.equal(out1.mu, out2.mu)
    out1.mu.sum().backward()
    assert m.lstm.weight_hh_l0.grad is not None
    m.eval()
    torch.testing.assert_close(m(z, a)[0].mu, tiny_m()(z, a)[0].mu)  # no masks at eval time
    # With p -> 0 the step loop is the fused LSTM.
    m0 = tiny_m(dropout=1e-9).train()
    torch.testing.assert_close(m0(z, a)[0].mu, tiny_m()(z, a)[0].mu, rtol=1e-4, atol=1e-5)


# --- the exploit detector ------------------------------------------------------------------

def test_exploit_detector_fires_on_an_m_that_pays_for_anything(agent_models, tmp_path):
    from worldmodels.commands.train_controller import exploit_flag, train_controller

    vae, rnn, _ = agent_models
    ckpt = load_checkpoint(rnn)
    ckpt["model"]["reward_head.bias"] = torch.tensor([50.0])  # +50 a step, whatever C does
    farm = tmp_path / "farm.pt"
    save_checkpoint(farm, kind="mdnrnn", config=ckpt["config"], model=ckpt["model"],
                    parents=ckpt["parents"], extra=ckpt["extra"])
    cfg = ControllerConfig(popsize=4, rollouts_per_candidate=2, generations=2,
                           dream_max_steps=30, eval_every=2, eval_episodes=1, workers=1)
    train_controller(vae, farm, tmp_path / "c", cfg, ENV, device="cpu", progress=False)
    gen, real, _, dream, flagged = runs.read_done(tmp_path / "c")["evals"][-1]
    assert dream > 1000 > real and flagged  # ~1500 in 30 dream steps: no real game pays that
    assert not exploit_flag(100.0, 90.0, 150.0) and exploit_flag(1200.0, 1100.0, 150.0)


def test_exploit_detector_fires_when_the_dream_rises_and_the_real_return_falls():
    from worldmodels.commands.train_controller import exploit_flag

    best = [8, 516.9, 144.0, 15.9, False]  # E14c seed 0's peak: gen, real, std, dream, flag
    assert exploit_flag(33.9, 327.8, 150.0, best=best)       # its generation 10
    assert not exploit_flag(33.9, 327.8, 150.0)               # the old rule missed it
    assert not exploit_flag(10.0, 327.8, 150.0, best=best)    # real fell, dream fell too
    assert not exploit_flag(33.9, 400.0, 150.0, best=best)    # real fell less than the gap


@pytest.mark.parametrize("kill_at", [None, 2])
def test_patience_stops_after_evaluations_without_a_new_best_and_keeps_the_best(
        agent_models, tmp_path, monkeypatch, kill_at):
    from worldmodels.commands.train_controller import train_controller
    from worldmodels.rollouts import EpisodeRunner

    vae, rnn, _ = agent_models
    served: list[float] = []  # the validation returns handed out: 100, 90, 80, ...
    killed: list[bool] = []

    def falling_validation(self, tasks, progress=None):
        if kill_at is not None and len(served) == kill_at and not killed:
            killed.append(True)
            raise KeyboardInterrupt  # killed in generation kill_at + 1's evaluation
        served.append(100.0 - 10.0 * len(served))
        return np.full(len(tasks), served[-1]), np.full(len(tasks), 5)

    monkeypatch.setattr(EpisodeRunner, "run", falling_validation)
    cfg = ControllerConfig(popsize=4, rollouts_per_candidate=2, generations=10,
                           dream_max_steps=10, eval_every=1, eval_episodes=1, workers=1,
                           patience=2)
    if kill_at is not None:
        with pytest.raises(KeyboardInterrupt):
            train_controller(vae, rnn, tmp_path / "c", cfg, ENV, device="cpu", progress=False)
        assert not runs.is_done(tmp_path / "c")
    best = train_controller(vae, rnn, tmp_path / "c", cfg, ENV, device="cpu", progress=False)
    done = runs.read_done(tmp_path / "c")
    assert [e[0] for e in done["evals"]] == [1, 2, 3] and done["generations"] == 3
    assert done["stopped_early"] and done["best_generation"] == 1
    assert load_checkpoint(best)["step"] == 1  # the C of generation 1, not the last one
    with pytest.raises(ValueError, match="patience"):
        ControllerConfig(eval_every=0, patience=2)


@pytest.mark.parametrize(("every", "start", "expected"),
                         [(2, 0, [2, 4, 5]), (2, 3, [4, 5]), (1, 4, [4, 5]), (2, 9, [5])])
def test_eval_start_skips_the_early_evaluations_and_keeps_the_last(
        agent_models, tmp_path, monkeypatch, every, start, expected):
    from worldmodels.commands.train_controller import train_controller
    from worldmodels.rollouts import EpisodeRunner

    vae, rnn, _ = agent_models
    monkeypatch.setattr(EpisodeRunner, "run", lambda self, tasks, progress=None: (
        np.full(len(tasks), 10.0), np.full(len(tasks), 5)))
    cfg = ControllerConfig(popsize=4, rollouts_per_candidate=1, generations=5,
                           dream_max_steps=5, eval_every=every, eval_start=start,
                           eval_episodes=2, workers=1)
    train_controller(vae, rnn, tmp_path / "c", cfg, ENV, device="cpu", progress=False)
    done = runs.read_done(tmp_path / "c")
    assert [e[0] for e in done["evals"]] == expected
    assert done["real_steps"] == 5 * 2 * len(expected)  # no episode for a skipped evaluation
    with pytest.raises(ValueError, match="eval_start"):
        ControllerConfig(eval_start=-1)


# --- the iterative loop ----------------------------------------------------------------------

def set_validation(monkeypatch, change) -> None:
    """The pipeline reads each C's best validation return as ``change(C's folder, return)``."""
    from worldmodels.commands import iterate

    real = iterate._controller_summary

    def summary(folder):
        out = real(folder)
        out["best_val_return"] = change(folder, out["best_val_return"])
        return out

    monkeypatch.setattr(iterate, "_controller_summary", summary)


def iterate_preset():
    p = tiny_preset()
    # dreams branched from the rounds' data, as the laptop preset's
    return replace(p, controller=replace(p.controller, eval_every=3, eval_episodes=1,
                                         dream_start="branch"),
                   iterate=IterateConfig(rounds=2, episodes=2, workers=1, recon_frames=20))


@pytest.mark.slow
def test_iterate_two_rounds_resume_and_honest_protocol(tmp_path, monkeypatch):
    from worldmodels.commands import train_rnn as train_rnn_mod
    from worldmodels.commands.pipeline import run_pipeline
    from worldmodels.rollouts import EpisodeRunner

    # Every real episode of C's training must be on a validation track: no fitness is real.
    real_run, seen = EpisodeRunner.run, []

    def spy(self, tasks, progress=None):
        seen.extend(seed for _, seed in tasks)
        return real_run(self, tasks, progress)

    monkeypatch.setattr(EpisodeRunner, "run", spy)
    p = iterate_preset()  # round 1 collects 2 episodes, round 2 3 (iterate.round_episodes)
    preset = replace(p, iterate=replace(p.iterate, round_episodes="2,3"))
    full = tmp_path / "full"
    run_pipeline(full, preset, device="cpu", until="iterate", progress=False)
    train_seeds = set(seen)
    assert train_seeds and all(s in seeds.validation_seeds(preset.controller.eval_episodes)
                               for s in train_seeds)

    summary = read_json(full / "iterate.json")
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for k in (1, 2):
        rd = full / "rounds" / f"{k:02d}"
        manifest = [line for line in (rd / "rollouts" / "manifest.jsonl").read_text().splitlines()]
        prev_c = Path(rounds[k - 1]["controller"])
        assert len(manifest) == k + 1 == rounds[k]["episodes"]
        assert all('"policy": "agent"' in m for m in manifest)
        assert all(checkpoint_sha256(prev_c) in m for m in manifest)
        # M of round k learnt from every round's latents so far.
        # (named relative to M's folder: the run folder can be moved)
        data = read_json(rd / "rnn" / "config.json")["config"]["data"]
        assert [(rd / "rnn" / d).resolve() for d in data] == [(full / "latents").resolve()] + [
            (full / "rounds" / f"{j:02d}" / "latents").resolve() for j in range(1, k + 1)]
    steps = sum(r["collect_steps"] + r["validation_steps"] for r in rounds)
    assert summary["real_steps_total"] == steps == rounds[-1]["real_steps_cumulative"]
    assert all(r["train_real_steps"] == 0 for r in rounds)
    best = max(rounds, key=lambda r: r["best_val_return"])
    assert summary["chosen"]["controller"] == best["controller"]

    # Killed while training M of round 2, then rerun: the same rounds as uninterrupted.
    cut = tmp_path / "cut"
    real_train, calls = train_rnn_mod.train_rnn, []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*a, **kw)

    monkeypatch.setattr(train_rnn_mod, "train_rnn", dying)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cut, preset, device="cpu", until="iterate", progress=False)
    assert (cut / "rounds" / "02" / "latents").is_dir()
    assert not (cut / "rounds" / "02" / "controller").exists()
    monkeypatch.setattr(train_rnn_mod, "train_rnn", real_train)
    run_pipeline(cut, preset, device="cpu", until="iterate", progress=False)
    again = read_json(cut / "iterate.json")["rounds"]
    for a, b in zip(rounds, again):
        assert (a["best_val_return"], a["evals"], a["collect_steps"]) == (
            b["best_val_return"], b["evals"], b["collect_steps"])
    for k in (1, 2):
        sub = Path("rounds") / f"{k:02d}" / "controller" / "controller.pt"
        torch.testing.assert_close(load_checkpoint(full / sub)["model"],
                                   load_checkpoint(cut / sub)["model"], rtol=0, atol=0)

    # The run folder moved whole: the same command resumes it there, redoes nothing (no real
    # episode, no file of a stage rewritten) and the chosen C loads the moved folder's V and M.
    moved = tmp_path / "moved"
    for lock in cut.rglob(runs.LOCK):  # the stages' locks, as when the process ended
        runs.release(lock.parent)
    cut.rename(moved)
    stamps = {p: p.stat().st_mtime_ns for p in moved.rglob("*.pt")}
    played = len(seen)
    run_pipeline(moved, preset, device="cpu", until="iterate", progress=False)
    assert len(seen) == played
    assert {p: p.stat().st_mtime_ns for p in moved.rglob("*.pt")} == stamps
    summary = read_json(moved / "iterate.json")
    assert [r["evals"] for r in summary["rounds"]] == [r["evals"] for r in again]
    chosen = Path(summary["chosen"]["controller"])
    assert moved in chosen.parents
    agent = WorldModelsAgent.from_checkpoints(chosen)
    assert all(moved in Path(p).parents for p in agent.sources.values()), agent.sources


@pytest.mark.slow
def test_fine_tuned_rounds_start_m_from_the_previous_round_and_c_from_the_previous_c(tmp_path):
    from worldmodels.commands.pipeline import run_pipeline

    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=1, warm_start=True, fine_tune_m=True,
                                        fine_tune_epochs=1))
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    m_record = read_json(tmp_path / "rounds" / "01" / "rnn" / "config.json")["config"]
    assert m_record["init_sha256"] == checkpoint_sha256(tmp_path / "rnn" / "mdnrnn.pt")
    assert m_record["epochs"] == 1 != preset.rnn.epochs
    c_record = read_json(tmp_path / "rounds" / "01" / "controller" / "config.json")["config"]
    assert c_record["init_sha256"] == checkpoint_sha256(
        read_json(tmp_path / "iterate.json")["rounds"][0]["controller"])


@pytest.mark.slow
def test_several_ms_per_round_keep_the_c_with_the_best_validation(tmp_path):
    from worldmodels.commands.pipeline import run_pipeline

    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=1, models=2))
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    rd = tmp_path / "rounds" / "01"
    seeds_used = [read_json(d / "rnn" / "config.json")["config"]["seed"] for d in (rd, rd / "m1")]
    assert seeds_used[0] == preset.rnn.seed != seeds_used[1]
    summary = read_json(tmp_path / "iterate.json")
    r1 = summary["rounds"][1]
    models = r1["models"]
    assert [m["model"] for m in models] == [0, 1]
    assert [Path(m["controller"]).parent for m in models] == [rd / "controller", rd / "m1" / "controller"]
    for m in models:  # each C learnt in its own M's dream and was validated on its own
        c_cfg = read_json(Path(m["controller"]).parent / "config.json")["config"]
        assert c_cfg["mdnrnn_sha256"] == checkpoint_sha256(m["rnn"])
        assert m["validation_steps"] > 0
    best = max(models, key=lambda m: m["best_val_return"])
    assert r1["controller"] == best["controller"] and r1["rnn"] == best["rnn"]
    assert r1["best_val_return"] == best["best_val_return"]
    # every C's validation episodes were real env steps
    assert r1["validation_steps"] == sum(m["validation_steps"] for m in models)
    assert summary["real_steps_total"] == sum(r["collect_steps"] + r["validation_steps"]
                                              for r in summary["rounds"])
    # a rerun finds every stage done and changes nothing
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    assert read_json(tmp_path / "iterate.json")["rounds"][1]["models"] == models


@pytest.mark.slow
def test_stop_at_ends_the_rounds_once_a_kept_c_validates_high_enough(tmp_path, monkeypatch,
                                                                     capsys):
    from worldmodels.commands.pipeline import run_pipeline

    # Round 1's Cs validate at 600 (the tiny world's Cs cannot drive): the stop is reached there.
    set_validation(monkeypatch, lambda folder, v: 600.0 if "01" in Path(folder).parts else v)
    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=3, stop_at=500.0))
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    assert "validated at 600.0 >= iterate.stop_at 500; no round 2" in capsys.readouterr().out
    rounds = read_json(tmp_path / "iterate.json")["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and not (tmp_path / "rounds" / "02").exists()
    assert read_json(tmp_path / "iterate.json")["chosen"]["round"] == 1
    # rerun: the same stop, nothing more collected
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    assert [r["round"] for r in read_json(tmp_path / "iterate.json")["rounds"]] == [0, 1]
    # a stop above every validation runs every round
    higher = replace(preset, iterate=replace(preset.iterate, stop_at=1000.0, rounds=2))
    run_pipeline(tmp_path, higher, device="cpu", until="iterate", progress=False)
    assert [r["round"] for r in read_json(tmp_path / "iterate.json")["rounds"]] == [0, 1, 2]


@pytest.mark.slow
def test_round0_models_keep_the_best_validated_c_and_the_rounds_start_from_it(tmp_path,
                                                                              monkeypatch,
                                                                              capsys):
    from worldmodels.commands import iterate
    from worldmodels.commands.pipeline import run_pipeline

    # The tiny world gives every C about the same validation score: M 1's C is made the best,
    # so that keeping M 0 (the pipeline's own) would fail below.
    summary_of = iterate._controller_summary

    def m1_validates_best(folder):
        out = summary_of(folder)
        if folder.parent.name == "m1":
            out["best_val_return"] += 100.0
        return out

    monkeypatch.setattr(iterate, "_controller_summary", m1_validates_best)
    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=0, round0_models=2))
    summary = run_pipeline(tmp_path, preset, device="cpu", progress=False)
    record = read_json(tmp_path / "round0_models.json")
    models = record["models"]
    assert [Path(m["controller"]).parent for m in models] == [
        tmp_path / "controller", tmp_path / "m1" / "controller"]
    assert models[0]["rnn_seed"] == preset.rnn.seed != models[1]["rnn_seed"]
    assert read_json(tmp_path / "m1" / "rnn" / "config.json")["config"]["seed"] == models[1]["rnn_seed"]
    for m in models:  # each C learnt in its own M's dream and was validated on its own
        c_cfg = read_json(Path(m["controller"]).parent / "config.json")["config"]
        assert c_cfg["mdnrnn_sha256"] == checkpoint_sha256(m["rnn"])
        assert m["validation_steps"] > 0
    best = models[1]
    assert best["best_val_return"] == max(m["best_val_return"] for m in models)
    assert record["chosen"]["controller"] == best["controller"]
    assert record["validation_steps"] == sum(m["validation_steps"] for m in models)
    # the chosen C is the one scored on the test episodes, and the run's summary names it
    # and its own M (not M 0's)
    assert summary["controller_sha256"] == checkpoint_sha256(best["controller"])
    printed = capsys.readouterr().out
    assert f"  {'controller':<11} {best['controller']}\n" in printed
    assert f"  {'rnn':<11} {best['rnn']}\n" in printed

    # Rounds after it start from the chosen C and M, and count every round-0 validation.
    rounds = replace(preset, iterate=replace(preset.iterate, rounds=1, fine_tune_m=True,
                                             fine_tune_epochs=1))
    run_pipeline(tmp_path, rounds, device="cpu", until="iterate", progress=False)
    assert read_json(tmp_path / "round0_models.json") == record  # nothing redone
    it = read_json(tmp_path / "iterate.json")
    r0, r1 = it["rounds"]
    kept_rnn = best["rnn"] if it["chosen"]["round"] == 0 else r1["rnn"]
    assert f"  {'rnn':<11} {kept_rnn}\n" in capsys.readouterr().out
    assert r0["controller"] == best["controller"] and r0["models"] == models
    assert r0["validation_steps"] == record["validation_steps"]
    manifest = (tmp_path / "rounds" / "01" / "rollouts" / "manifest.jsonl").read_text()
    assert checkpoint_sha256(best["controller"]) in manifest
    m1_cfg = read_json(tmp_path / "rounds" / "01" / "rnn" / "config.json")["config"]
    assert m1_cfg["init_sha256"] == checkpoint_sha256(best["rnn"])


def test_round0_models_need_validation():
    p = iterate_preset()
    with pytest.raises(ValueError, match="round0-models.*--controller.eval-every"):
        replace(p, controller=replace(p.controller, eval_every=0),
                iterate=replace(p.iterate, round0_models=2))
    with pytest.raises(ValueError, match="controllers.*--controller.eval-every"):
        replace(p, controller=replace(p.controller, eval_every=0),
                iterate=replace(p.iterate, controllers=2))
    with pytest.raises(ValueError, match="stop-at.*--controller.eval-every"):
        replace(p, controller=replace(p.controller, eval_every=0),
                iterate=replace(p.iterate, stop_at=300.0))


@pytest.mark.slow
def test_several_cs_per_m_each_its_own_cma_seed_the_best_validated_kept(tmp_path, monkeypatch,
                                                                       capsys):
    from worldmodels.commands.pipeline import run_pipeline

    # M 0's second C (controller_c1) is made the best, so keeping the pipeline's own C fails.
    set_validation(monkeypatch, lambda folder, v: v + 100.0 if folder.name == "controller_c1"
                   else v)
    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=0, round0_models=1, controllers=2))
    summary = run_pipeline(tmp_path, preset, device="cpu", progress=False)
    record = read_json(tmp_path / "round0_models.json")
    cs = record["models"]
    assert [Path(c["controller"]).parent for c in cs] == [
        tmp_path / "controller", tmp_path / "controller_c1"]
    assert [c["model"] for c in cs] == [0, 0] and cs[0]["rnn"] == cs[1]["rnn"]  # one M
    assert not (tmp_path / "m1").exists()
    assert cs[0]["controller_seed"] == preset.controller.seed != cs[1]["controller_seed"]
    for c in cs:  # each C is its own CMA-ES run, with its own seed, validated on its own
        c_cfg = read_json(Path(c["controller"]).parent / "config.json")["config"]
        assert c_cfg["controller"]["seed"] == c["controller_seed"]
        assert c_cfg["mdnrnn_sha256"] == checkpoint_sha256(c["rnn"])
        assert c["validation_steps"] > 0
    from worldmodels.checkpoint import load_checkpoint

    w0, w1 = (load_checkpoint(c["controller"])["model"] for c in cs)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # other seed, other search
    assert record["chosen"]["controller"] == cs[1]["controller"]
    assert summary["controller_sha256"] == checkpoint_sha256(cs[1]["controller"])
    assert "round 0: chose C 2 of 2 (M 0" in capsys.readouterr().out
    # a rerun redoes nothing
    run_pipeline(tmp_path, preset, device="cpu", progress=False)
    assert read_json(tmp_path / "round0_models.json") == record


@pytest.mark.slow
def test_round0_controllers_sets_round_0s_cs_apart_from_the_rounds(tmp_path):
    from worldmodels.commands.pipeline import run_pipeline

    p = iterate_preset()
    preset = replace(p, iterate=replace(p.iterate, rounds=1, models=1, controllers=2,
                                        round0_controllers=1))
    assert preset.iterate.round0_cs == 1 and replace(p.iterate, controllers=3).round0_cs == 3
    run_pipeline(tmp_path, preset, device="cpu", progress=False)
    # round 0: the pipeline's one C, no other C and no choice among Cs
    assert not (tmp_path / "controller_c1").exists()
    assert not (tmp_path / "round0_models.json").exists()
    # round 1: two Cs in its M's dream, each validated, the best of both rounds kept
    cs = read_json(tmp_path / "iterate.json")["rounds"][1]["models"]
    assert [Path(c["controller"]).parent.name for c in cs] == ["controller", "controller_c1"]
    assert cs[0]["controller_seed"] != cs[1]["controller_seed"]
    assert all(c["validation_steps"] > 0 for c in cs)
    with pytest.raises(ValueError, match="round0-controllers.*--controller.eval-every"):
        replace(p, controller=replace(p.controller, eval_every=0),
                iterate=replace(p.iterate, round0_controllers=2))


def test_round_episodes_sets_each_rounds_collection_and_refuses_a_bad_list():
    it = IterateConfig(episodes=40, round_episodes="100, 200")
    assert [it.episodes_of(k) for k in (1, 2, 3)] == [100, 200, 200]  # past the list: its last
    assert IterateConfig(episodes=40).episodes_of(2) == 40
    for bad in ("100,0", "100,x", ",", "-5"):
        with pytest.raises(ValueError, match="round_episodes.*--iterate.round-episodes"):
            IterateConfig(round_episodes=bad)


@pytest.mark.slow
def test_iterate_eval_start_moves_the_rounds_first_validation_and_not_round_0s(tmp_path):
    from worldmodels.commands.pipeline import run_pipeline

    p = iterate_preset()
    preset = replace(p, controller=replace(p.controller, generations=4, eval_every=2),
                     iterate=replace(p.iterate, rounds=1, eval_start=4))
    run_pipeline(tmp_path, preset, device="cpu", until="iterate", progress=False)
    rounds = read_json(tmp_path / "iterate.json")["rounds"]
    assert [e[0] for e in rounds[0]["evals"]] == [2, 4]  # round 0: controller.eval_start
    assert [e[0] for e in rounds[1]["evals"]] == [4]     # round 1: one validation, at 4
    c1 = read_json(tmp_path / "rounds" / "01" / "controller" / "config.json")["config"]
    assert c1["controller"]["eval_start"] == 4
    assert rounds[1]["validation_steps"] * 2 == rounds[0]["validation_steps"]  # 40-step episodes
    with pytest.raises(ValueError, match="eval_start"):
        replace(p.iterate, eval_start=-1)


def test_a_run_folder_of_0_1_0_resumes_when_new_fields_keep_their_old_behaviour(tmp_path):
    # 0.1.0 wrote M's config without `dropout`: the same config with dropout 0 resumes it,
    # dropout 0.05 (another training) is refused.
    cfg = asdict(MDNRNNConfig())
    old = {k: v for k, v in cfg.items() if k != "dropout"}
    runs.start_run(tmp_path, old, "train-rnn")
    runs.start_run(tmp_path, cfg, "train-rnn")
    with pytest.raises(runs.RunConfigMismatch, match="dropout"):
        runs.start_run(tmp_path, asdict(MDNRNNConfig(dropout=0.05)), "train-rnn")


# The fields of the configs that run folders record, as 0.1.0 had them (commit 0b692d7's parent).
FIELDS_0_1_0 = {
    "EnvConfig": {"env_id", "frame_size", "crop_rows", "max_steps"},
    "CollectConfig": {"episodes", "workers", "max_steps", "policy", "seed"},
    "VAEConfig": {"z_dim", "kl_tolerance", "epochs", "batch_size", "lr", "val_episodes",
                  "max_frames_per_epoch", "seed"},
    "MDNRNNConfig": {"z_dim", "action_dim", "hidden_size", "n_gaussians", "predict_reward",
                     "predict_done", "done_pos_weight", "reward_weight", "done_weight", "seq_len",
                     "batch_size", "lr", "grad_clip", "epochs", "val_episodes", "seed"},
    "ControllerConfig": {"mode", "popsize", "sigma0", "rollouts_per_candidate", "generations",
                         "temperature", "dream_max_steps", "real_max_steps", "done_threshold",
                         "sample_done", "use_mu", "eval_every", "eval_episodes", "workers", "seed"},
    "ClusterConfig": set(),
}


def test_every_field_added_since_0_1_0_says_how_0_1_0_behaved(tmp_path):
    # A field missing from ADDED_FIELDS makes every older run folder refuse to resume.
    from dataclasses import fields

    from worldmodels import config

    for name, old in FIELDS_0_1_0.items():
        new = {f.name for f in fields(getattr(config, name))} - old
        assert new <= set(config.ADDED_FIELDS), (name, new - set(config.ADDED_FIELDS))
    # M's record as 0.1.0 wrote it resumes under today's config with the old behaviour
    cfg = MDNRNNConfig(reward_clip=0.0, reward_smooth=0)
    runs.start_run(tmp_path, {k: v for k, v in asdict(cfg).items()
                              if k in FIELDS_0_1_0["MDNRNNConfig"]}, "train-rnn")
    runs.start_run(tmp_path, asdict(cfg), "train-rnn")
    with pytest.raises(runs.RunConfigMismatch, match="reward_smooth"):
        runs.start_run(tmp_path, asdict(replace(cfg, reward_smooth=21)), "train-rnn")


def test_warm_start_begins_at_the_previous_c_and_resumes(agent_models, tmp_path):
    from worldmodels.agents.world_models_agent import load_controller

    from worldmodels.commands.train_controller import train_controller
    from worldmodels.es import CMAES

    x0 = np.linspace(-1, 1, 10)
    es = CMAES(10, sigma0=0.01, popsize=4, seed=0, x0=x0)
    np.testing.assert_array_equal(es.mean, x0)
    assert np.abs(es.ask() - x0).max() < 0.1
    es.tell(np.arange(4.0))
    again = CMAES.from_state_dict(es.state_dict())
    np.testing.assert_array_equal(again.mean, es.mean)
    np.testing.assert_array_equal(again.x0, x0)

    vae, rnn, c = agent_models
    cfg = ControllerConfig(popsize=4, rollouts_per_candidate=1, generations=1,
                           dream_max_steps=10, eval_every=0, workers=1, sigma0=1e-6)
    out = train_controller(vae, rnn, tmp_path / "warm", cfg, ENV, device="cpu",
                           progress=False, init=c)
    start = load_controller(c)[0].get_flat()
    np.testing.assert_allclose(load_controller(out)[0].get_flat(), start, atol=1e-4)
    assert read_json(tmp_path / "warm" / "config.json")["config"]["init_sha256"] == \
        checkpoint_sha256(c)


# --- the reward ensemble ------------------------------------------------------------------

def test_ensemble_fitness_is_the_mean_over_reward_heads_and_the_penalty_charges_disagreement():
    ens = tiny_m(reward_heads=3)
    with torch.no_grad():
        ens.reward_head.weight.normal_(0, 0.5)
        ens.reward_head.bias.copy_(torch.tensor([0.5, -0.2, 1.0]))
    members = []
    for k in range(3):  # the same M with head k alone
        m = tiny_m()
        m.load_state_dict({**ens.state_dict(),
                           "reward_head.weight": ens.reward_head.weight[k:k + 1].clone(),
                           "reward_head.bias": ens.reward_head.bias[k:k + 1].clone()})
        members.append(m)
    init = (torch.randn(3, Z), torch.full((3, Z), -2.0))
    params = torch.randn(4, 3 + (Z + H) * 3) * 0.3

    def returns(m, **kw):
        return BatchedDream(m, *init, temperature=1.0, max_steps=12, **kw).evaluate(params, 5, 3)

    mean = torch.stack([returns(m) for m in members]).mean(0)
    torch.testing.assert_close(returns(ens), mean, rtol=1e-5, atol=1e-5)
    assert (returns(ens, reward_penalty=1.0) < mean - 1e-3).all()
    # One step's reward is the reference dream's: the heads' mean less the penalty's std.
    dream = BatchedDream(ens, *init, temperature=0.0, reward_penalty=1.0)
    z0, a = torch.randn(2, Z), torch.rand(2, 3)
    dream.reset(2, z=z0)
    with torch.no_grad():
        ref = reference_dream(ens, z0, a, ens.initial_state(2), temperature=0.0,
                              reward_penalty=1.0)
    torch.testing.assert_close(dream.step(a)[2], ref.reward, rtol=1e-5, atol=1e-5)


def test_reward_heads_learn_from_their_own_halves():
    from worldmodels.commands.train_rnn import bootstrap_weights
    from worldmodels.mdnrnn import mdnrnn_loss

    w = bootstrap_weights(torch.arange(0, 4000, 7), 4, seed=0)
    assert w.shape == (572, 4) and set(w.unique().tolist()) == {0.0, 1.0}
    assert 0.4 < w.mean() < 0.6 and not torch.equal(w[:, 0], w[:, 1])
    torch.testing.assert_close(bootstrap_weights(torch.arange(0, 4000, 7), 4, seed=0), w)

    m = tiny_m(reward_heads=2).train()
    z, a = torch.randn(3, 4, Z), torch.rand(3, 4, 3)
    out, _ = m(z, a)
    target = torch.randn(3, 4)
    only = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # head 0: rows 0-1, head 1: row 2
    loss = mdnrnn_loss(out, z, target, torch.zeros(3, 4, dtype=torch.bool), reward_weights=only)
    expect = ((out.reward[:2, :, 0] - target[:2]) ** 2).mean() / 2 + \
        ((out.reward[2:, :, 1] - target[2:]) ** 2).mean() / 2
    torch.testing.assert_close(loss.reward_mse, expect)


def test_a_second_process_on_a_busy_run_folder_is_refused_before_it_writes(
        tmp_path, capsys, make_rollouts):
    """Two commands on one folder used to wedge it for good; now the second stops at once."""
    import subprocess
    import sys

    from worldmodels.cli import main
    from worldmodels.runs import LOCK

    data = make_rollouts(tmp_path / "rollouts")
    out = tmp_path / "vae"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(out / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train-vae", "--preset", "debug", "--data", str(data), "--out", str(out),
                     "--vae.val-episodes", "1"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert "another worldmodels process is running in" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK]


def test_branched_dreams_in_train_controller(agent_models, tmp_path, make_rollouts):
    """dream_start=branch needs latent folders (refused before anything is written), records
    them in the run's config, and scores C in dreams that start from their states."""
    from worldmodels.commands.encode import encode_rollouts
    from worldmodels.commands.train_controller import train_controller

    vae, rnn, _ = agent_models
    cfg = ControllerConfig(popsize=4, rollouts_per_candidate=2, generations=1, dream_max_steps=10,
                           eval_every=0, workers=1, dream_start="branch")
    with pytest.raises(ValueError, match="--branch-data"):
        train_controller(vae, rnn, tmp_path / "none", cfg, ENV, device="cpu", progress=False)
    assert not (tmp_path / "none").exists()
    latents = encode_rollouts(make_rollouts(tmp_path / "rollouts", lengths=(12, 15)), vae,
                              tmp_path / "latents", device="cpu", progress=False)
    train_controller(vae, rnn, tmp_path / "c", cfg, ENV, device="cpu", progress=False,
                     branch_data=[latents])
    record = read_json(tmp_path / "c" / "config.json")["config"]
    assert record["branch_data"] == [os.path.join("..", "latents")]   # relative to C's folder
    with pytest.raises(ValueError, match="dream_start"):
        ControllerConfig(dream_start="middle")
