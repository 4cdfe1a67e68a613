"""``worldmodels collect``: policies, determinism across workers, resume, interrupts, CLI."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_process_group_ends
from worldmodels.agents import make_policy
from worldmodels.envs import make_env

from worldmodels import cli
from worldmodels.commands.collect import collect_episode, collect_rollouts, episode_seeds
from worldmodels.config import CollectConfig, EnvConfig
from worldmodels.data import MANIFEST, episode_files, read_manifest, read_shard
from worldmodels.runs import RunConfigMismatch, is_done
from worldmodels.utils import sha256_file

CFG = CollectConfig(episodes=4, workers=1, policy="brownian", seed=0)
ENV = EnvConfig(max_steps=30)


def shards(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    return {e["file"]: read_shard(folder / e["file"]) for e in read_manifest(folder)}


def manifest_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> dict[int, Path]:
    """The same collection made with 1 and with 2 workers."""
    folders = {}
    for workers in (1, 2):
        folders[workers] = tmp_path_factory.mktemp(f"w{workers}")
        collect_rollouts(folders[workers], replace(CFG, workers=workers), ENV, progress=False)
    return folders


# --- policies ---------------------------------------------------------------------------

def test_unknown_policy_lists_names(tmp_path):
    with pytest.raises(ValueError, match="brownian.*random"):
        make_policy("greedy", np.random.default_rng(0))
    with pytest.raises(ValueError, match="CollectConfig.policy .* got 'greedy'"):
        replace(CFG, policy="greedy")
    with pytest.raises(ValueError, match="unknown policy 'sticky'"):   # Take Cover's
        collect_rollouts(tmp_path / "out", replace(CFG, policy="sticky"), ENV, progress=False)
    assert not (tmp_path / "out").exists()


def act_many(name: str, seed: int, n: int = 2000) -> np.ndarray:
    policy = make_policy(name, np.random.default_rng(seed))
    policy.reset()
    return np.stack([policy.act(None) for _ in range(n)])


@pytest.mark.parametrize("name", ["brownian", "random"])
def test_policy_actions_are_valid_and_seeded(name):
    actions = act_many(name, 7)
    assert actions.dtype == np.float32 and actions.shape == (2000, 3)
    assert (actions >= [-1, 0, 0]).all() and (actions <= [1, 1, 1]).all()
    np.testing.assert_array_equal(actions, act_many(name, 7))
    assert not np.array_equal(actions, act_many(name, 8))


def lag1_autocorr(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def test_brownian_is_correlated_and_drives_forward():
    actions = act_many("brownian", 0, 20_000)
    steer, gas, brake = actions.T
    assert lag1_autocorr(steer) > 0.9
    assert abs(steer.mean()) < 0.1 and steer.std() > 0.15  # turns both ways
    assert gas.mean() > brake.mean() + 0.15               # forward bias
    assert (brake == 0).mean() > 0.6                       # the brake is mostly released


def test_random_is_uniform_and_uncorrelated():
    actions = act_many("random", 0, 20_000)
    assert abs(lag1_autocorr(actions[:, 0])) < 0.05
    np.testing.assert_allclose(actions.mean(0), [0, 0.5, 0.5], atol=0.02)


# --- collection -------------------------------------------------------------------------

def test_same_seed_same_arrays_whatever_the_workers(collected):
    one, two = shards(collected[1]), shards(collected[2])
    assert sorted(one) == [f"ep_{i:06d}.npz" for i in range(4)]
    assert sorted(two) == sorted(one)
    for name in one:
        for key in one[name]:
            np.testing.assert_array_equal(one[name][key], two[name][key], err_msg=f"{name}:{key}")
    # same entries; the files' sha256 may differ, as the zip format stores the write time
    strip = lambda entries: [{k: v for k, v in e.items() if k != "sha256"}  # noqa: E731
                             for e in entries]
    assert strip(read_manifest(collected[1])) == strip(read_manifest(collected[2]))
    # episodes differ from each other (each has its own track and policy seed)
    assert not np.array_equal(one["ep_000000.npz"]["obs"][0], one["ep_000001.npz"]["obs"][0])
    assert len({e["seed"] for e in read_manifest(collected[1])}) == 4


def test_manifest_matches_files(collected):
    folder = collected[2]
    assert is_done(folder)
    recorded = json.loads((folder / "collect.json").read_text())["config"]
    assert recorded["env"]["env_id"] == ENV.env_id and recorded["policy"] == CFG.policy
    entries = read_manifest(folder)
    assert [e["index"] for e in entries] == [0, 1, 2, 3]
    assert len(episode_files(folder, verify=True)) == 4
    for e in entries:
        arrays = read_shard(folder / e["file"])
        assert e["sha256"] == sha256_file(folder / e["file"])
        assert e["length"] == len(arrays["obs"]) == ENV.max_steps
        assert e["return"] == pytest.approx(float(arrays["reward"].sum(dtype=np.float64)))
        assert e["seed"] == episode_seeds(CFG.seed, e["index"])[0] and e["policy"] == "brownian"
        # cut at --env.max-steps: a time limit on the last step only
        assert arrays["truncated"].tolist() == [False] * (ENV.max_steps - 1) + [True]
        assert not arrays["terminated"].any()


def test_obs_action_alignment(collected):
    entry = read_manifest(collected[1])[1]
    arrays = read_shard(collected[1] / entry["file"])
    env = make_env(ENV)
    try:
        obs, _ = env.reset(seed=entry["seed"])
        np.testing.assert_array_equal(arrays["obs"][0], obs)  # obs[t] is seen before action[t]
        for t in range(3):
            obs, reward, *_ = env.step(arrays["action"][t])
            np.testing.assert_array_equal(arrays["obs"][t + 1], obs)
            assert arrays["reward"][t] == np.float32(reward)
    finally:
        env.close()
    # the stored actions are the seeded policy's
    policy = make_policy("brownian", np.random.default_rng(episode_seeds(CFG.seed, 1)[1]))
    policy.reset()
    replayed = np.stack([policy.act(obs) for obs in arrays["obs"]])
    np.testing.assert_array_equal(arrays["action"], replayed)


@pytest.mark.parametrize("change", [{"seed": 1}, {"policy": "random"}, {"max_steps": 31}])
def test_rerun_with_other_options_is_refused(collected, change):
    folder = collected[1]
    before = (folder / MANIFEST).read_bytes()
    cfg, env = ((CFG, replace(ENV, **change)) if "max_steps" in change  # the env's
                else (replace(CFG, **change), ENV))
    with pytest.raises(RunConfigMismatch, match=next(iter(change))):
        collect_rollouts(folder, cfg, env, progress=False)
    with pytest.raises(RunConfigMismatch, match="env_id"):
        collect_rollouts(folder, CFG, replace(ENV, env_id="CarRacing-v3"),
                         progress=False)
    assert (folder / MANIFEST).read_bytes() == before


def collect_json_of_0_1_0(max_steps: int) -> dict:
    """The collect.json that worldmodels 0.1.0 wrote for CFG and ENV, whose collect section had
    its own ``max_steps`` (removed since: ``config.REMOVED_FIELDS``)."""
    return {"stage": "collect", "config": {
        "policy": "brownian", "seed": 0, "max_steps": max_steps,
        "env": {"env_id": "worldmodels/CarRacingFast-v3", "frame_size": 64, "crop_rows": 84,
                "max_steps": 30}}}


def test_a_folder_of_0_1_0_resumes_unless_its_collect_max_steps_cut_episodes(tmp_path, collected):
    out = tmp_path / "rollouts"
    collect_rollouts(out, replace(CFG, episodes=2), ENV, progress=False)
    # collect.max_steps = env.max_steps (every preset), or above it (`--env.max-steps 30` alone):
    # the env's time limit cut every episode, as now
    for max_steps, episodes in ((30, 3), (1000, 4)):
        old = json.dumps(collect_json_of_0_1_0(max_steps))
        (out / "collect.json").write_text(old)
        entries = collect_rollouts(out, replace(CFG, episodes=episodes), ENV, progress=False)
        assert [e["index"] for e in entries] == list(range(episodes))
        assert (out / "collect.json").read_text() == old      # the record is kept as written
    for name, arrays in shards(collected[1]).items():        # the same data as a new run's
        np.testing.assert_array_equal(read_shard(out / name)["obs"], arrays["obs"])

    # 20-step episodes in a 30-step env: a collection this version cannot express
    (out / "collect.json").write_text(json.dumps(collect_json_of_0_1_0(max_steps=20)))
    with pytest.raises(RunConfigMismatch) as refused:
        collect_rollouts(out, replace(CFG, episodes=5), ENV, progress=False)
    assert str(refused.value) == (
        f"{out} holds a collect run that this version cannot resume: collect.max_steps 20 "
        "with env.max_steps 30 cannot be expressed any more: collect.max_steps was removed "
        "after 0.1.0, env.max_steps sets both; use another output folder")
    assert len(read_manifest(out)) == 4
    (out / "collect.json").write_text(old)                   # the refusal kept no lock
    assert collect_rollouts(out, CFG, ENV, progress=False) == entries


def test_second_collect_into_the_same_folder_is_refused(collected):
    from worldmodels.runs import LOCK, RunLocked

    with open(collected[1] / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running collect holds it
        with pytest.raises(RunLocked, match="another worldmodels process is running in"):
            collect_rollouts(collected[1], CFG, ENV, progress=False)
    assert collect_rollouts(collected[1], CFG, ENV, progress=False) == read_manifest(collected[1])


def test_collect_into_a_latents_folder_is_refused(tmp_path):
    latents = tmp_path / "latents"
    latents.mkdir()
    (latents / "encode.json").write_text(json.dumps({"stage": "encode", "config": {}}))
    with pytest.raises(RunConfigMismatch, match="holds a encode run .encode.json., not a collect"):
        collect_rollouts(latents, CFG, ENV, progress=False)
    assert sorted(p.name for p in latents.iterdir()) == ["encode.json"]


def test_rerun_recollects_a_listed_shard_that_was_truncated(tmp_path, collected):
    out = tmp_path / "rollouts"
    collect_rollouts(out, replace(CFG, episodes=2), ENV, progress=False)
    shard = out / "ep_000001.npz"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="ep_000001.npz is listed in the manifest but changed"):
        entries = collect_rollouts(out, replace(CFG, episodes=2), ENV, progress=False)
    assert [e["index"] for e in entries] == [0, 1]
    assert len(episode_files(out, verify=True)) == 2
    redone, reference = shards(out)["ep_000001.npz"], shards(collected[1])["ep_000001.npz"]
    for key in reference:
        np.testing.assert_array_equal(redone[key], reference[key])


def test_resume_after_a_crash(tmp_path, collected):
    out = tmp_path / "rollouts"
    first = collect_rollouts(out, replace(CFG, episodes=2), ENV, progress=False)
    assert [e["index"] for e in first] == [0, 1]
    kept = {name: (out / name).stat().st_mtime_ns for name in ("ep_000000.npz", "ep_000001.npz")}
    # A crash of a later run: episode 2 written but not listed, episode 3 half-written under
    # its final name (e.g. copied by hand), a stray temp file, a manifest line cut short.
    orphan = collect_episode(2, out, CFG, ENV)
    (out / "ep_000003.npz").write_bytes((out / "ep_000002.npz").read_bytes()[:500])
    (out / ".ep_000003.npz.k1ll3d.tmp").write_bytes(b"partial")
    with open(out / MANIFEST, "a") as f:
        f.write('{"index": 3, "fi')

    with pytest.warns(UserWarning, match="corrupt"):
        entries = collect_rollouts(out, replace(CFG, workers=2), ENV, progress=False)

    assert [e["index"] for e in entries] == [0, 1, 2, 3]
    assert [e["index"] for e in manifest_lines(out)] == [0, 1, 2, 3]  # no duplicates
    assert list(out.glob(".*")) == []                                 # no partial files
    assert sorted(p.name for p in out.glob("ep_*.npz")) == [e["file"] for e in entries]
    assert len(episode_files(out, verify=True)) == 4
    assert entries[2]["sha256"] == orphan["sha256"]   # adopted, not redone
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept
    # the resumed collection equals the uninterrupted one
    resumed, reference = shards(out), shards(collected[1])
    for name in reference:
        for key in reference[name]:
            np.testing.assert_array_equal(resumed[name][key], reference[name][key])
    # a rerun asking for fewer episodes collects nothing and returns those asked for
    before = (out / MANIFEST).read_bytes()
    assert [e["index"] for e in collect_rollouts(out, replace(CFG, episodes=2), ENV,
                                                 progress=False)] == [0, 1]
    assert (out / MANIFEST).read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupt_stops_workers_and_leaves_no_partial_files(tmp_path, how):
    out = tmp_path / "rollouts"
    cfg, env = CollectConfig(episodes=8, workers=2, seed=3), EnvConfig(max_steps=80)
    # Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a script) passes
    # SIGINT ignored to its children, and the child would then finish instead of stopping.
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from worldmodels.commands.collect import collect_rollouts\n"
            "from worldmodels.config import CollectConfig, EnvConfig\n"
            f"collect_rollouts({str(out)!r}, CollectConfig(**{cfg.__dict__!r}),"
            f" EnvConfig(**{env.__dict__!r}), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not read_manifest(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    else:
        os.kill(proc.pid, signal.SIGTERM)   # `kill PID` reaches the parent only
    _, stderr = proc.communicate(timeout=30)
    assert b"KeyboardInterrupt" in stderr
    assert_process_group_ends(proc.pid, how, seconds=5)  # the workers are gone too
    done = read_manifest(out)
    assert 1 <= len(done) < cfg.episodes and not is_done(out)
    assert list(out.glob(".*")) == []
    for path in out.glob("ep_*.npz"):
        read_shard(path)  # whatever is visible is complete
    # rerunning continues where it stopped
    more = collect_rollouts(out, replace(cfg, episodes=len(done) + 1, workers=1), env,
                            progress=False)
    finished = {e["index"]: e["sha256"] for e in done}  # finish order, not always 0, 1, ...
    assert max(finished) <= len(done) and [e["index"] for e in more] == list(range(len(done) + 1))
    assert {e["index"]: e["sha256"] for e in more if e["index"] in finished} == finished


# --- command line -----------------------------------------------------------------------

@pytest.fixture
def collect_only(monkeypatch):
    """The CLI with just this stage (other stage modules may not exist yet)."""
    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c[0] == "collect"])


def test_cli(tmp_path, capsys, collect_only):
    def collect(out: Path, *extra: str) -> int:
        return cli.main(["collect", "--preset", "debug", "--collect.episodes", "1",
                         "--env.max-steps", "20", "--collect.workers", "1", "--out", str(out),
                         "--no-progress", *extra])

    out = tmp_path / "rollouts"
    assert collect(out, "--collect.policy", "random") == 0
    assert "1 episodes (1 new" in capsys.readouterr().out
    (entry,) = read_manifest(out)
    assert entry["length"] == 20 and entry["policy"] == "random"

    assert collect(out, "--collect.policy", "random", "--collect.seed", "5") == 2
    assert "different config" in capsys.readouterr().err
    assert collect(tmp_path / "x", "--collect.policy", "sticky") == 2   # Take Cover's
    assert "unknown policy 'sticky'" in capsys.readouterr().err
    assert collect(tmp_path / "y", "--env.env-id", "Nope-v0") == 2
    assert "unknown environment id 'Nope-v0'" in capsys.readouterr().err
    assert collect(tmp_path / "z", "--collect.episodes", "0") == 2
    assert "episodes (--collect.episodes) must be >= 1, got 0" in capsys.readouterr().err
    # the episode length is env's alone: collect's own option is gone after 0.1.0
    assert collect(tmp_path / "w", "--collect.max-steps", "20") == 2
    assert capsys.readouterr().err == (
        "worldmodels collect: error: unrecognized arguments: --collect.max-steps 20; "
        "--collect.max-steps was removed after 0.1.0, --env.max-steps sets it now\n")
    assert not any((tmp_path / d).exists() for d in "xyzw")


def test_cli_help_explains_every_option(capsys, collect_only):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["collect", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--collect.episodes", "--collect.workers",
                   "--collect.policy", "--collect.seed", "--out", "--env.env-id",
                   "--env.max-steps", "--cluster.backend", "--preset", "--no-progress"):
        assert option in text
    assert "--collect.max-steps" not in text   # removed after 0.1.0: --env.max-steps


def test_tiny_rollouts_fixture_is_a_valid_data_folder(tiny_rollouts, make_rollouts, tmp_path):
    files = episode_files(tiny_rollouts, verify=True)
    assert [len(read_shard(f)["obs"]) for f in files] == [12, 9, 15]
    assert read_shard(files[-1])["terminated"][-1] and read_shard(files[0])["truncated"][-1]
    other = make_rollouts(tmp_path / "other", lengths=(5,), seed=1)
    assert [e["length"] for e in read_manifest(other)] == [5]
