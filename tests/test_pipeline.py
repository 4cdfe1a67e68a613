"""`worldmodels pipeline` end to end on the real env, its resume, `worldmodels play` on the
pipeline's controller, a real TensorBoard server reading the run's logs, and the CLI's errors.

The ``debug`` preset runs once (module fixture, about a minute on 2 cores) and the play,
TensorBoard and results tests reuse its run folder (all marked ``slow``). The resume test runs
a smaller preset of its own (``tiny_preset``), as it runs the pipeline several times.
"""

from __future__ import annotations

import csv
import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from worldmodels import seeds
from worldmodels.checkpoint import checkpoint_sha256, load_checkpoint
from worldmodels.cli import CLIError, main
from worldmodels.commands.pipeline import STAGES, run_pipeline
from worldmodels.commands.play import caption_height
from worldmodels.config import EnvConfig, get_preset, to_dict
from worldmodels.data import read_manifest
from worldmodels.runs import RunConfigMismatch
from worldmodels.testing import tiny_preset
from worldmodels.utils import read_json
from worldmodels.video import read_video_frames, upscale

RESULT_KEYS = {"agent", "controller", "controller_sha256", "vae", "vae_sha256", "mdnrnn",
               "mdnrnn_sha256", "env_id", "max_steps", "use_mu", "version", "seeds", "returns",
               "lengths", "summary"}
SUMMARY_KEYS = {"episodes", "mean", "std", "min", "max", "solved_threshold", "solved"}
TB_RUNS = {"vae": "vae", "rnn": "mdnrnn", "controller": "es"}   # tb/<stage>: a tag prefix


@dataclass
class Run:
    folder: Path
    summary: dict
    wall_s: float    # run_pipeline's wall time, which the stage timings must add up within


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Run:
    """The ``debug`` preset, every stage, on the real (fast) CarRacing."""
    folder = tmp_path_factory.mktemp("debug") / "run"
    # device "auto", the command's default: every stage must resolve it (to the CPU in CI)
    start = time.perf_counter()
    summary = run_pipeline(folder, get_preset("debug"), device="auto", progress=False)
    return Run(folder, summary, time.perf_counter() - start)


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the debug pipeline end to end ------------------------------------------------------------

@pytest.mark.slow
def test_debug_pipeline_lays_out_the_documented_run_folder(debug_run):
    run, debug = debug_run.folder, get_preset("debug")
    for rel in ("rollouts/manifest.jsonl", "rollouts/collect.json", "rollouts/done.json",
                "vae/vae.pt", "vae/config.json", "vae/done.json",
                "latents/manifest.jsonl", "latents/encode.json", "latents/done.json",
                "rnn/mdnrnn.pt", "rnn/config.json", "rnn/done.json",
                "controller/controller.pt", "controller/controller_best.pt",
                "controller/config.json", "controller/done.json",
                "eval/results.json", "timings.json", "preset.json"):
        assert (run / rel).is_file(), rel
    assert read_json(run / "preset.json") == to_dict(debug)

    # Rollouts and latents: one shard per episode, the same episodes in both manifests.
    rollouts, latents = read_manifest(run / "rollouts"), read_manifest(run / "latents")
    for folder in ("rollouts", "latents"):   # one line per episode (in completion order)
        assert len((run / folder / "manifest.jsonl").read_text().splitlines()) == len(rollouts)
    assert [e["index"] for e in rollouts] == list(range(debug.collect.episodes))
    assert [(e["index"], e["length"]) for e in latents] == [(e["index"], e["length"]) for e in rollouts]
    assert all(0 < e["length"] <= debug.env.max_steps for e in rollouts)
    for folder, entries in ((run / "rollouts", rollouts), (run / "latents", latents)):
        assert sorted(p.name for p in folder.glob("ep_*.npz")) == sorted(e["file"] for e in entries)

    # Each stage finished with its preset's sizes.
    assert read_json(run / "vae" / "done.json")["epochs"] == debug.vae.epochs
    assert read_json(run / "rnn" / "done.json")["epochs"] == debug.rnn.epochs
    done = read_json(run / "controller" / "done.json")
    assert done["generations"] == debug.controller.generations
    assert done["best_generation"] == debug.controller.eval_every   # the only real evaluation
    assert read_json(run / "latents" / "done.json")["episodes"] == debug.collect.episodes

    # The lineage: M records V, C records V and M.
    vae_sha = checkpoint_sha256(run / "vae" / "vae.pt")
    rnn_sha = checkpoint_sha256(run / "rnn" / "mdnrnn.pt")
    assert load_checkpoint(run / "rnn" / "mdnrnn.pt", kind="mdnrnn")["parents"] == {"vae_sha256": vae_sha}
    best = load_checkpoint(run / "controller" / "controller_best.pt", kind="controller")
    assert best["parents"] == {"vae_sha256": vae_sha, "mdnrnn_sha256": rnn_sha}
    assert best["step"] == debug.controller.eval_every

    # TensorBoard: events and scalars.csv per training stage.
    assert sorted(p.name for p in (run / "tb").iterdir()) == sorted(TB_RUNS)
    for stage, prefix in TB_RUNS.items():
        assert list((run / "tb" / stage).glob("events.out.tfevents.*")), stage
        assert any(r["tag"].startswith(prefix + "/") for r in csv_rows(run / "tb" / stage / "scalars.csv"))

    timings = read_json(run / "timings.json")
    assert set(timings) == set(STAGES)
    # each stage timed once, from its own start (each value rounded to 0.1 s)
    assert 0 < sum(timings.values()) <= debug_run.wall_s + 0.05 * len(STAGES)


@pytest.mark.slow
def test_debug_pipeline_results(debug_run):
    run, debug = debug_run.folder, get_preset("debug")
    results = read_json(run / "eval" / "results.json")
    assert debug_run.summary == results          # run_pipeline returns what it wrote
    assert set(results) == RESULT_KEYS and set(results["summary"]) == SUMMARY_KEYS

    n = debug.eval.episodes
    assert results["agent"] == "world_models"
    assert results["seeds"] == seeds.test_seeds(n)
    assert len(results["returns"]) == len(results["lengths"]) == results["summary"]["episodes"] == n
    assert all(0 < length <= debug.env.max_steps for length in results["lengths"])
    assert results["env_id"] == debug.env.env_id and results["max_steps"] == debug.env.max_steps
    assert results["use_mu"] is debug.eval.use_mu
    assert Path(results["controller"]) == run / "controller" / "controller_best.pt"
    for key, path in (("controller", run / "controller" / "controller_best.pt"),
                      ("vae", run / "vae" / "vae.pt"), ("mdnrnn", run / "rnn" / "mdnrnn.pt")):
        assert Path(results[key]).resolve() == path.resolve()
        assert results[f"{key}_sha256"] == checkpoint_sha256(path)
    s = results["summary"]
    assert s["mean"] == pytest.approx(np.mean(results["returns"]))
    assert s["min"] == min(results["returns"]) and s["max"] == max(results["returns"])
    assert s["solved"] is False and s["solved_threshold"] == 900


# --- resume ------------------------------------------------------------------------------------

# Files that every pipeline run rewrites by design (bookkeeping, not stage results).
REWRITTEN = {"timings.json", "preset.json", "rollouts/done.json"}


def snapshot(run: Path, *subfolders: str) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of every file in ``subfolders`` of ``run`` (all of it if none)."""
    roots = [run / s for s in subfolders] or [run]
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(run).as_posix()
            if path.is_file() and rel not in REWRITTEN:
                out[rel] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.mark.slow
def test_pipeline_resumes_after_an_interruption_and_a_finished_one_redoes_nothing(
        tmp_path, monkeypatch, capsys):
    from worldmodels.dream import BatchedDream

    preset, run = tiny_preset(), tmp_path / "run"

    # 1. Stop after V.
    assert run_pipeline(run, preset, device="cpu", until="train-vae", progress=False) == {}
    assert (run / "vae" / "done.json").is_file()
    assert not any((run / d).exists() for d in ("latents", "rnn", "controller", "eval"))
    assert set(read_json(run / "timings.json")) == {"collect", "train-vae"}
    first = snapshot(run, "rollouts", "vae")
    assert len([k for k in first if k.startswith("rollouts/ep_")]) == preset.collect.episodes
    capsys.readouterr()

    # 2. Ctrl-C in generation 2 of C's training, after generation 1 was checkpointed.
    real_evaluate, calls = BatchedDream.evaluate, []

    def dying_evaluate(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(BatchedDream, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(run, preset, device="cpu", progress=False)
    out = capsys.readouterr().out
    assert "(0 new" in out and "already finished" in out      # collect and V not redone
    assert snapshot(run, "rollouts", "vae") == first
    assert load_checkpoint(run / "controller" / "controller.pt", kind="controller")["step"] == 1
    assert not (run / "controller" / "done.json").exists() and not (run / "eval").exists()
    second = snapshot(run, "rollouts", "vae", "latents", "rnn")
    monkeypatch.setattr(BatchedDream, "evaluate", real_evaluate)

    # 3. Rerun: C carries on from generation 1; nothing before it is redone.
    summary = run_pipeline(run, preset, device="cpu", progress=False)
    out = capsys.readouterr().out
    assert "(0 new" in out and f"encode: {run / 'latents'} is already finished" in out
    assert f"train-rnn: {run / 'rnn'} is already finished" in out
    assert snapshot(run, "rollouts", "vae", "latents", "rnn") == second
    assert len(calls) == 2   # the patched evaluate was not called again
    ckpt = load_checkpoint(run / "controller" / "controller.pt", kind="controller")
    assert ckpt["step"] == preset.controller.generations
    assert ckpt["extra"]["es"]["fitness"].shape == (preset.controller.generations,
                                                    preset.controller.popsize)
    # Each generation logged once: the resumed run did not start over.
    fitness_steps = [int(r["step"]) for r in csv_rows(run / "tb" / "controller" / "scalars.csv")
                     if r["tag"] == "es/fitness_mean"]
    assert fitness_steps == list(range(1, preset.controller.generations + 1))
    results = read_json(run / "eval" / "results.json")
    assert summary == results and set(results) == RESULT_KEYS
    assert Path(results["controller"]) == run / "controller" / "controller.pt"   # eval_every=0
    assert results["controller_sha256"] == checkpoint_sha256(run / "controller" / "controller.pt")
    assert len(results["returns"]) == preset.eval.episodes
    assert set(read_json(run / "timings.json")) == set(STAGES)

    # 4. A finished pipeline: nothing redone (no file rewritten, evaluation included).
    finished = snapshot(run)
    assert run_pipeline(run, preset, device="cpu", progress=False) == summary
    out = capsys.readouterr().out
    assert f"train-controller: {run / 'controller'} is already finished" in out
    assert f"evaluate: {run / 'eval' / 'results.json'} is already finished" in out
    s = summary["summary"]
    assert (f"score: world_models on {preset.env.env_id}, {s['episodes']} episodes: "
            f"mean {s['mean']:.1f} +- {s['std']:.1f}") in out       # the main job reports it
    assert snapshot(run) == finished

    # 5. More evaluation episodes: only the evaluation is redone; same tracks, same returns.
    more = replace(preset, eval=replace(preset.eval, episodes=2))
    summary2 = run_pipeline(run, more, device="cpu", progress=False)
    assert summary2["seeds"] == seeds.test_seeds(2) and summary2["returns"][0] == summary["returns"][0]
    assert read_json(run / "eval" / "results.json") == summary2
    assert {k: v for k, v in snapshot(run).items() if k != "eval/results.json"} == \
        {k: v for k, v in finished.items() if k != "eval/results.json"}

    # 6. A stage started with another config refuses to resume, naming the difference.
    other = replace(preset, vae=replace(preset.vae, epochs=2))
    recorded = (run / "preset.json").read_bytes()
    with pytest.raises(RunConfigMismatch, match="epochs: 1 -> 2"):
        run_pipeline(run, other, device="cpu", progress=False)
    assert (run / "preset.json").read_bytes() == recorded   # still describes the run
    assert snapshot(run, "vae") == {k: v for k, v in finished.items() if k.startswith("vae/")}


def test_a_run_folder_of_0_1_0_resumes_with_the_same_command(tmp_path, capsys):
    run = tmp_path / "run"
    command = ["pipeline", "--preset", "debug", "--run-dir", str(run), "--until", "collect",
               "--collect.episodes", "2", "--collect.workers", "1", "--env.max-steps", "20",
               "--device", "cpu", "--no-progress"]
    assert main(command) == 0
    # As 0.1.0 recorded it: collect's own max_steps too, the debug preset's 100 (the env's 20
    # cut the episodes first).
    collect_json, preset_json = read_json(run / "rollouts" / "collect.json"), read_json(run / "preset.json")
    collect_json["config"]["max_steps"] = preset_json["collect"]["max_steps"] = 100
    (run / "rollouts" / "collect.json").write_text(json.dumps(collect_json))
    (run / "preset.json").write_text(json.dumps(preset_json))
    capsys.readouterr()
    assert main(command) == 0
    assert "collect: 2 episodes (0 new)" in capsys.readouterr().out
    assert read_json(run / "rollouts" / "collect.json") == collect_json
    assert "max_steps" not in read_json(run / "preset.json")["collect"]   # this version's


def test_a_run_folder_of_another_preset_is_refused_with_the_preset_to_resume_it(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["pipeline", "--run-dir", str(run), "--until", "collect", "--collect.workers", "1",
            "--env.max-steps", "20", "--device", "cpu", "--no-progress"]
    assert main([*base, "--preset", "debug", "--collect.episodes", "2"]) == 0
    recorded = (run / "preset.json").read_bytes()
    assert main([*base, "--preset", "debug", "--collect.episodes", "2",
                 "--collect.seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "different config (seed: 0 -> 5)" in err and "started with" not in err, err
    assert main([*base, "--preset", "debug", "--preset", "branch", "--collect.episodes", "2",
                 "--collect.seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "started with --preset debug" in err and "asks for --preset debug+branch" in err, err
    assert (run / "preset.json").read_bytes() == recorded      # the refused run changed nothing
    # A folder of the `laptop` of before session 21 (C in the real env) names `laptop-real`.
    old = read_json(run / "preset.json")
    old["name"], old["controller"]["mode"] = "laptop", "real"
    (run / "preset.json").write_text(json.dumps(old))
    assert main([*base, "--preset", "debug", "--collect.episodes", "2",
                 "--collect.seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "pass --preset laptop-real to resume it" in err, err
    # A folder of session 21's `laptop` (round 1 without the episode offset) names the options.
    old["controller"]["mode"], old["collect"]["episode_offset"] = "dream", 0.0
    (run / "preset.json").write_text(json.dumps(old))
    assert main([*base, "--preset", "debug", "--collect.episodes", "2", "--collect.seed", "5",
                 "--collect.episode-offset", "0.15"]) == 2
    err = capsys.readouterr().err
    assert ("--collect.episode-offset 0 --collect.action-noise-dims '' --iterate.rounds 1 to "
            "resume it") in err, err


# --- worldmodels play ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_play_records_three_panels_one_frame_per_step(debug_run, tmp_path, capsys, ext):
    from worldmodels.envs import make_env

    steps, size, fps = 12, 96, 25
    out = tmp_path / f"drive{ext}"
    controller = debug_run.folder / "controller" / "controller_best.pt"
    assert main(["play", "--controller", str(controller), "--record", str(out),
                 "--max-steps", str(steps), "--panel-size", str(size), "--fps", str(fps),
                 "--device", "cpu"]) == 0
    assert f"in {steps} steps" in capsys.readouterr().out

    frames = read_video_frames(out)
    # hstack_panels: 3 square panels, over the caption bar
    assert frames.shape == (steps, size + caption_height(size), 3 * size, 3)
    if ext == ".gif":
        with Image.open(out) as im:
            assert im.info["duration"] == round(1000 / fps)
    else:
        cap = cv2.VideoCapture(str(out))
        try:
            assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps)
        finally:
            cap.release()

    # Panel 1 of frame 0 is the real first frame of the track, down to its bottom row (the
    # car and the dashboard: no text over them); panels 2 and 3 (V's reconstruction, M's
    # prediction) are other images.
    env = make_env(EnvConfig(max_steps=steps))
    try:
        _, info = env.reset(seed=seeds.TEST_START)
    finally:
        env.close()
    rows = slice(size // 4, size)
    real = upscale(info["raw_frame"], size)[rows].astype(np.int16)
    panels = [frames[0, rows, i * size:(i + 1) * size].astype(np.int16) for i in range(3)]
    assert np.abs(panels[0] - real).mean() < 6
    assert np.abs(panels[1] - real).mean() > 10 and np.abs(panels[2] - real).mean() > 10
    assert not np.array_equal(frames[0], frames[-1])


@pytest.mark.slow
def test_play_record_every_k_keeps_every_kth_step_in_real_time(debug_run, tmp_path):
    steps, every, size = 14, 5, 48   # frames of steps 0, 5 and 10; 10 fps
    out = tmp_path / "drive.gif"
    controller = debug_run.folder / "controller" / "controller_best.pt"
    assert main(["play", "--controller", str(controller), "--record", str(out),
                 "--max-steps", str(steps), "--panel-size", str(size), "--every", str(every),
                 "--device", "cpu"]) == 0
    frames = read_video_frames(out)
    assert frames.shape == (3, size + caption_height(size), 3 * size, 3)
    with Image.open(out) as im:
        assert im.info["duration"] == 100  # 50 / 5 = 10 frames/s: still real time
    every_step = tmp_path / "all.gif"
    assert main(["play", "--controller", str(controller), "--record", str(every_step),
                 "--max-steps", str(steps), "--panel-size", str(size), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(frames, read_video_frames(every_step)[::every])
    assert out.stat().st_size < every_step.stat().st_size
    assert main(["play", "--controller", str(controller), "--record", str(out),
                 "--every", "0"]) == 2


@pytest.mark.slow
def test_play_needs_something_to_show(debug_run):
    import argparse

    from worldmodels.commands import play

    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    args = parser.parse_args(["--controller", str(debug_run.folder / "controller" / "controller_best.pt")])
    with pytest.raises(CLIError, match="nothing to show.*--render human.*--record"):
        play.run(args)


@pytest.mark.slow
def test_play_render_human_without_display_is_a_clear_error(debug_run, monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    controller = debug_run.folder / "controller" / "controller_best.pt"
    assert main(["play", "--controller", str(controller), "--render", "human",
                 "--max-steps", "5", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("worldmodels play: error: no display")
    assert "xvfb-run" in captured.err and "Traceback" not in captured.err + captured.out
    assert "episode" not in captured.out   # refused before driving


# --- TensorBoard ---------------------------------------------------------------------------------

def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_serves_the_stage_scalars(debug_run, tmp_path):
    tb = debug_run.folder / "tb"
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy

    def get(path: str):
        with opener.open(base + path, timeout=5) as response:
            return json.loads(response.read())

    expected = {
        "vae": {"vae/loss", "vae/recon", "vae/kl", "vae/val_loss", "time/img_per_s"},
        "rnn": {"mdnrnn/loss", "mdnrnn/gmm_nll", "mdnrnn/reward_mse", "mdnrnn/done_bce",
                "mdnrnn/val_loss"},
        "controller": {"es/fitness_best", "es/fitness_mean", "es/fitness_worst", "es/sigma",
                       "dream/return_mean", "eval/real_return_mean"},
    }
    log_path = tmp_path / "tensorboard.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(tb), "--host", "127.0.0.1",
             "--port", str(port), "--load_fast=false", "--reload_interval", "1"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, tags = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            assert server.poll() is None, f"TensorBoard exited:\n{log_path.read_text()}"
            try:
                tags = get("/data/plugin/scalars/tags")
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                tags = {}
            if all(set(tags.get(run, {})) >= want for run, want in expected.items()):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"TensorBoard did not serve the tags within 60 s; got {tags}\n"
                        f"{log_path.read_text()}")
        assert set(get("/data/runs")) == set(expected)

        # The served values are the logged ones (scalars.csv is written by the same calls).
        for run, tag in (("vae", "vae/loss"), ("rnn", "mdnrnn/loss"), ("controller", "es/fitness_mean")):
            query = urllib.parse.urlencode({"run": run, "tag": tag})
            served = [(step, value) for _, step, value in get(f"/data/plugin/scalars/scalars?{query}")]
            logged = [(int(r["step"]), float(r["value"]))
                      for r in csv_rows(tb / run / "scalars.csv") if r["tag"] == tag]
            assert logged and [s for s, _ in served] == [s for s, _ in logged]
            np.testing.assert_allclose([v for _, v in served], [v for _, v in logged], rtol=1e-6)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- CLI errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["pipeline", "--foo.epochs", "1"], "unrecognized arguments: --foo.epochs 1"),
    (["pipeline", "--vae.nope", "1"], "unrecognized arguments: --vae.nope 1"),
    (["pipeline", "--vae.epochs", "abc"], "argument --vae.epochs: invalid int value: 'abc'"),
    (["pipeline", "--vae.lr", "fast"], "argument --vae.lr: invalid float value: 'fast'"),
    (["pipeline", "--vae.epochs"], "argument --vae.epochs: expected one argument"),
    (["pipeline", "--vae.epochs", "0"], "VAEConfig.epochs (--vae.epochs) must be >= 1, got 0"),
])
def test_pipeline_bad_option_is_a_clear_error(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    assert main([*argv, "--run-dir", str(run), "--preset", "debug"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"worldmodels pipeline: error: {message}")
    assert "Traceback" not in captured.err + captured.out
    assert not run.exists()   # refused before anything is written


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    assert main(["pipeline", "--run-dir", str(tmp_path / "run"), "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "argument --preset: invalid choice: 'nope'" in err and "debug" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train-vae", "train-rnn", "encode-data", "encode-vae",
                                     "train-controller", "evaluate", "play"])
def test_stage_with_missing_input_is_a_clear_error(debug_run, tmp_path, capsys, command):
    missing = tmp_path / "missing"
    run = debug_run.folder
    argv, named = {
        "train-vae": (["train-vae", "--data", str(missing), "--out", str(tmp_path / "vae")], missing),
        "train-rnn": (["train-rnn", "--data", str(missing), "--out", str(tmp_path / "rnn")],
                      missing / "encode.json"),
        "encode-data": (["encode", "--data", str(missing), "--vae", str(run / "vae" / "vae.pt"),
                         "--out", str(tmp_path / "latents")], missing),
        "encode-vae": (["encode", "--data", str(run / "rollouts"), "--vae", str(missing / "vae.pt"),
                        "--out", str(tmp_path / "latents")], missing / "vae.pt"),
        "train-controller": (["train-controller", "--vae", str(missing / "vae.pt"),
                              "--rnn", str(run / "rnn" / "mdnrnn.pt"), "--out", str(tmp_path / "c")],
                             missing / "vae.pt"),
        "evaluate": (["evaluate", "--controller", str(missing / "c.pt"),
                      "--out", str(tmp_path / "results.json")], missing / "c.pt"),
        "play": (["play", "--controller", str(missing / "c.pt"),
                  "--record", str(tmp_path / "drive.gif")], missing / "c.pt"),
    }[command]
    assert main([*argv, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    name = argv[0]
    assert captured.err.startswith(f"worldmodels {name}: error: ")
    assert str(named) in captured.err and "not found" in captured.err
    assert "Traceback" not in captured.err + captured.out
    # nothing written: no output file, and no stage folder that would pin a config
    assert not any((tmp_path / f).exists() for f in ("results.json", "drive.gif", "vae",
                                                      "rnn", "latents"))
