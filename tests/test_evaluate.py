"""worldmodels evaluate: the documented JSON, determinism, baselines and clear errors."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_process_group_ends

from worldmodels import seeds
from worldmodels.checkpoint import CheckpointError, checkpoint_sha256
from worldmodels.cli import CLIError
from worldmodels.config import EnvConfig
from worldmodels.testing import save_controller, save_vae, tiny_world_models

STEPS = 30


def evaluate_args(*argv: str) -> argparse.Namespace:
    """Parse evaluate's command line with the module's own parser."""
    from worldmodels.commands import evaluate

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(["--eval.episodes", "2", "--env.max-steps", str(STEPS),
                              "--eval.workers", "1", "--device", "cpu", "--no-progress", *argv])


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("agent")
    vae, rnn = tiny_world_models(folder)
    return save_controller(folder / "controller.pt", vae, rnn)


def test_writes_documented_json_deterministically(controller, tmp_path, capsys):
    from worldmodels.commands import evaluate

    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    evaluate.run(evaluate_args("--controller", str(controller), "--out", str(out_a)))
    assert "mean" in capsys.readouterr().out
    evaluate.run(evaluate_args("--controller", str(controller), "--out", str(out_b)))
    a, b = json.loads(out_a.read_text()), json.loads(out_b.read_text())
    assert a == b

    assert a["agent"] == "world_models" and a["env_id"] == EnvConfig().env_id
    assert a["seeds"] == seeds.test_seeds(2) and a["max_steps"] == STEPS
    assert len(a["returns"]) == len(a["lengths"]) == 2
    assert all(0 < n <= STEPS for n in a["lengths"])
    assert a["controller_sha256"] == checkpoint_sha256(controller)
    assert a["vae_sha256"] == checkpoint_sha256(a["vae"])
    assert a["mdnrnn_sha256"] == checkpoint_sha256(a["mdnrnn"])
    assert a["use_mu"] is False
    s = a["summary"]
    assert s["episodes"] == 2 and s["solved_threshold"] == 900 and s["solved"] is False
    r = np.array(a["returns"])
    assert [s[k] for k in ("mean", "std", "min", "max")] == pytest.approx(
        [r.mean(), r.std(), r.min(), r.max()])


@pytest.mark.slow
def test_baseline_policy_same_with_any_number_of_workers(tmp_path):
    from worldmodels.commands import evaluate

    one = evaluate.evaluate_agent(policy="brownian", episodes=2, workers=1, progress=False,
                                  env_cfg=evaluate.EnvConfig(max_steps=STEPS))
    two = evaluate.evaluate_agent(policy="brownian", episodes=2, workers=2, progress=False,
                                  env_cfg=evaluate.EnvConfig(max_steps=STEPS))
    assert one["agent"] == "brownian" and one["controller"] is None
    assert one["returns"] == two["returns"] and one["lengths"] == two["lengths"]
    assert one["returns"][0] != one["returns"][1]   # different tracks


def test_corrupt_controller_is_a_checkpoint_error(controller, tmp_path):
    from worldmodels.commands import evaluate

    broken = tmp_path / "broken.pt"
    broken.write_bytes(controller.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        evaluate.run(evaluate_args("--controller", str(broken), "--out", str(tmp_path / "r.json")))
    assert not (tmp_path / "r.json").exists()


def test_mismatched_vae_is_a_checkpoint_error(controller, tmp_path):
    from worldmodels.commands import evaluate

    other = save_vae(tmp_path / "other_vae.pt", seed=42)
    with pytest.raises(CheckpointError, match="different vae"):
        evaluate.run(evaluate_args("--controller", str(controller), "--vae", str(other),
                                   "--out", str(tmp_path / "r.json")))


def test_controller_or_policy_not_both(controller, tmp_path):
    from worldmodels.commands import evaluate

    with pytest.raises(CLIError):
        evaluate.run(evaluate_args("--controller", str(controller), "--policy", "random"))
    with pytest.raises(CLIError):
        evaluate.run(evaluate_args())


@pytest.mark.slow
def test_kill_stops_the_worker_processes_and_writes_nothing(tmp_path):
    """`kill PID` (SIGTERM, which reaches the parent only) ends the command like Ctrl-C:
    exit 130, the spawned workers gone, no results file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "results.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldmodels.cli", "evaluate", "--policy", "random",
         "--eval.episodes", "40", "--eval.workers", "2", "--env.max-steps", "300", "--no-progress",
         "--out", str(out)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if len(children.read_text().split()) >= 2:   # the two workers are up
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()
    time.sleep(1.0)                                    # episodes under way
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"interrupted; rerun" in stderr, stderr.decode()
    assert_process_group_ends(proc.pid, "SIGTERM")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["evaluate", "--policy", "random", "--eval.episodes", "40", "--eval.workers", "2",
     "--env.max-steps", "300"],
    ["collect", "--preset", "debug", "--collect.episodes", "40", "--collect.workers", "2",
     "--env.max-steps", "300"],
])
def test_sigkill_of_the_parent_ends_its_workers(tmp_path, command):
    """SIGKILL gives the parent no chance to stop its workers: they notice that it is gone
    and exit by themselves (they used to run on, ~300 MB each)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "worldmodels.cli", *command, "--no-progress", "--out",
         str(tmp_path / "out")],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if len(children.read_text().split()) >= 2:   # the workers are up
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert_process_group_ends(proc.pid, "SIGKILL of the parent", seconds=15)


def test_unwritable_out_is_refused_before_any_episode(tmp_path, monkeypatch):
    from worldmodels.commands import evaluate

    def no_episodes(*args, **kwargs):
        raise AssertionError("an episode ran before --out was checked")

    monkeypatch.setattr(evaluate, "EpisodeRunner", no_episodes)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, message in [(tmp_path, "is a folder"), (a_file / "results.json", "cannot write")]:
        with pytest.raises(ValueError, match=message):
            evaluate.evaluate_agent(policy="random", episodes=2, workers=1, progress=False,
                                    env_cfg=EnvConfig(max_steps=STEPS), out_path=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
def test_interrupted_evaluation_resumes_to_the_same_result(tmp_path, monkeypatch):
    """Ctrl-C after 2 of 4 episodes keeps them; the rerun plays only the other 2 and writes
    the results of an uninterrupted run; the progress file is gone at the end."""
    from worldmodels.commands import evaluate

    kw = dict(policy="brownian", episodes=4, workers=1, progress=False,
              env_cfg=EnvConfig(max_steps=STEPS))
    whole = evaluate.evaluate_agent(**kw, out_path=tmp_path / "whole.json")
    out = tmp_path / "cut.json"
    real_append = evaluate.append_jsonl
    lines = []

    def interrupt_after_two(path, entry):
        if len(lines) == 3:  # the header and two episodes are saved
            raise KeyboardInterrupt
        lines.append(entry)
        real_append(path, entry)

    monkeypatch.setattr(evaluate, "append_jsonl", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_agent(**kw, out_path=out)
    monkeypatch.setattr(evaluate, "append_jsonl", real_append)
    assert not out.exists() and evaluate.partial_path(out).is_file()

    played = []
    real_run = evaluate.EpisodeRunner.run

    def counting_run(self, tasks, **run_kw):
        played.extend(seed for _, seed in tasks)
        return real_run(self, tasks, **run_kw)

    monkeypatch.setattr(evaluate.EpisodeRunner, "run", counting_run)
    resumed = evaluate.evaluate_agent(**kw, out_path=out)
    assert played == seeds.test_seeds(4)[2:]
    assert resumed == whole and json.loads(out.read_text()) == whole
    assert not evaluate.partial_path(out).exists()

    # A progress file of another agent or episode length is not reused.
    evaluate.partial_path(out).write_text(json.dumps({"identity": {"agent": "random"}}) + "\n"
                                          + json.dumps({"seed": whole["seeds"][0],
                                                        "return": 1e6, "length": 1}) + "\n")
    again = evaluate.evaluate_agent(**kw, out_path=out)
    assert again == whole
