"""Shared infrastructure: configs, checkpoints, shards and manifests, run folders, logger."""

import json
import os

import numpy as np
import pytest
import torch

from worldmodels import __version__
from worldmodels.checkpoint import (
    CheckpointError,
    check_parent,
    checkpoint_sha256,
    load_checkpoint,
    load_state,
    recorded_parent,
    relative_parents,
    save_checkpoint,
)
from worldmodels.config import (
    PRESETS,
    ControllerConfig,
    MDNRNNConfig,
    Preset,
    VAEConfig,
    field_docs,
    from_dict,
    get_preset,
    to_dict,
    with_overrides,
)
from worldmodels.data import (
    ShardError,
    append_manifest,
    episode_files,
    read_manifest,
    read_shard,
    write_shard,
)
from worldmodels.runs import (
    RunConfigMismatch,
    input_folders,
    is_done,
    mark_done,
    release,
    start_run,
)
from worldmodels.utils import atomic_write
from worldmodels.vae import ConvVAE


def rollout(T=7, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (T, 64, 64, 3), dtype=np.uint8),
        "action": rng.standard_normal((T, 3)).astype(np.float32),
        "reward": rng.standard_normal(T).astype(np.float32),
        "terminated": np.zeros(T, bool),
        "truncated": np.eye(1, T, T - 1, dtype=bool)[0],
    }


# --- configs -------------------------------------------------------------------------------

def test_every_config_field_is_documented():
    for cls in (VAEConfig, MDNRNNConfig, ControllerConfig):
        docs = field_docs(cls)
        missing = [f for f in cls.__dataclass_fields__ if f not in docs]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_presets_round_trip_and_paper_sizes():
    for name, preset in PRESETS.items():
        assert from_dict(Preset, to_dict(preset)) == preset, name
    paper = get_preset("paper")
    assert (paper.collect.episodes, paper.env.max_steps) == (10_000, 1000)
    assert (paper.vae.batch_size, paper.vae.lr, paper.vae.z_dim) == (100, 1e-4, 32)
    assert (paper.rnn.hidden_size, paper.rnn.n_gaussians, paper.rnn.batch_size) == (256, 5, 100)
    assert (paper.controller.popsize, paper.controller.rollouts_per_candidate) == (64, 16)
    assert paper.controller.sigma0 == 0.1


def test_unknown_preset_and_field_errors():
    with pytest.raises(ValueError, match="unknown preset 'nope'.*debug"):
        get_preset("nope")
    with pytest.raises(ValueError, match="unknown fields.*lrr"):
        with_overrides(VAEConfig(), {"lrr": 1.0})
    assert with_overrides(VAEConfig(), {"lr": 0.5, "epochs": None}) == VAEConfig(lr=0.5)


# --- checkpoints ---------------------------------------------------------------------------

def test_checkpoint_round_trip_is_weights_only(tmp_path):
    vae = ConvVAE(z_dim=8)
    path = save_checkpoint(tmp_path / "v.pt", kind="vae", config=to_dict(VAEConfig(z_dim=8)),
                           model=vae.state_dict(), step=5, parents={"x_sha256": "ab"})
    raw = torch.load(path, weights_only=True)  # must not need pickle of foreign objects
    assert raw["version"] == __version__ and raw["step"] == 5
    ckpt = load_checkpoint(path, kind="vae")
    other = ConvVAE(z_dim=8)
    load_state(other, ckpt["model"], path)
    for a, b in zip(vae.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.pt.*corrupt"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.pt", kind="vae", config={}, model=ConvVAE(4).state_dict())
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="is a 'vae' checkpoint, expected 'mdnrnn'"):
        load_checkpoint(good, kind="mdnrnn")
    no_config = tmp_path / "no_config.pt"
    torch.save({"kind": "vae", "model": ConvVAE(4).state_dict()}, no_config)
    with pytest.raises(CheckpointError, match="no_config.pt is not a complete worldmodels checkpoint"):
        load_checkpoint(no_config)
    with pytest.raises(CheckpointError,
                       match="shape fc_mu.weight: checkpoint \\(4, 1024\\) vs model \\(32, 1024\\)"):
        load_state(ConvVAE(32), load_checkpoint(good)["model"], good)


def test_a_full_disk_during_a_save_is_a_checkpoint_error_and_leaves_no_file(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed\nunexpected pos 64")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*v.pt .disk full"):
        save_checkpoint(tmp_path / "v.pt", kind="vae", config={}, model={})
    assert list(tmp_path.iterdir()) == []


def test_check_parent_refuses_other_parent(tmp_path):
    v1 = save_checkpoint(tmp_path / "v1.pt", kind="vae", config={}, model=ConvVAE(4).state_dict())
    v2 = save_checkpoint(tmp_path / "v2.pt", kind="vae", config={}, model=ConvVAE(4).state_dict())
    child = {"path": "m.pt", "parents": {"vae_sha256": checkpoint_sha256(v1)}}
    check_parent(child, "vae_sha256", v1)
    with pytest.raises(CheckpointError, match="different vae checkpoint"):
        check_parent(child, "vae_sha256", v2)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def failing(p):
        p.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


# --- shards and manifests -----------------------------------------------------------------

def test_shard_round_trip_and_manifest(tmp_path):
    arrays = rollout()
    sha = write_shard(tmp_path / "ep_000000.npz", arrays)
    append_manifest(tmp_path, {"index": 0, "file": "ep_000000.npz", "sha256": sha})
    back = read_shard(tmp_path / "ep_000000.npz")
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    assert episode_files(tmp_path, verify=True) == [tmp_path / "ep_000000.npz"]


def test_bad_shards_are_reported(tmp_path):
    arrays = rollout()
    bad_shape = dict(arrays, reward=arrays["reward"][:-1])
    with pytest.raises(ShardError, match="reward has shape \\(6,\\), expected \\(7,\\)"):
        write_shard(tmp_path / "x.npz", bad_shape)
    bad_dtype = dict(arrays, obs=arrays["obs"].astype(np.float32))
    with pytest.raises(ShardError, match="obs has dtype float32, expected uint8"):
        write_shard(tmp_path / "x.npz", bad_dtype)
    sha = write_shard(tmp_path / "ep_000001.npz", arrays)
    data = (tmp_path / "ep_000001.npz").read_bytes()
    (tmp_path / "ep_000001.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="corrupt or truncated shard .*ep_000001.npz"):
        read_shard(tmp_path / "ep_000001.npz")
    append_manifest(tmp_path, {"index": 1, "file": "ep_000001.npz", "sha256": sha})
    with pytest.raises(ShardError, match="does not match the sha256"):
        episode_files(tmp_path, verify=True)
    with pytest.warns(UserWarning, match="skipping"):
        assert episode_files(tmp_path, verify=True, skip_corrupt=True) == []


def test_manifest_tolerates_only_a_cut_last_line(tmp_path):
    append_manifest(tmp_path, {"index": 0, "file": "ep_000000.npz"})
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"index": 1, "fi')
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert [e["index"] for e in read_manifest(tmp_path)] == [0]
    (tmp_path / "manifest.jsonl").write_text('{"index": 0\n{"index": 1, "file": "ep_000001.npz"}\n')
    with pytest.raises(ShardError, match="line 1 is not valid JSON"):
        read_manifest(tmp_path)


# --- run folders ---------------------------------------------------------------------------

def test_run_folder_refuses_other_config(tmp_path):
    start_run(tmp_path / "r", {"lr": 1.0}, "vae")
    start_run(tmp_path / "r", {"lr": 1.0}, "vae")  # same config: resume
    with pytest.raises(RunConfigMismatch, match="lr: 1.0 -> 2.0"):
        start_run(tmp_path / "r", {"lr": 2.0}, "vae")
    assert not is_done(tmp_path / "r")
    mark_done(tmp_path / "r", {"ok": 1})
    assert is_done(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "done.json").read_text()) == {"ok": 1}


def test_input_folders_are_recorded_relative_to_the_run_so_a_moved_run_resumes(tmp_path):
    run = tmp_path / "run"
    (run / "latents").mkdir(parents=True)
    out = run / "rounds" / "01" / "rnn"
    record = input_folders([run / "latents", run / "rounds" / "01" / "latents"], out, "data")
    assert record == [os.path.join("..", "..", "..", "latents"), os.path.join("..", "latents")]
    start_run(out, {"data": record}, "train-rnn")
    release(out)  # the stage ended
    # the whole run moved: the same inputs name the same record, and it resumes
    moved = tmp_path / "moved"
    run.rename(moved)
    out = moved / "rounds" / "01" / "rnn"
    again = input_folders([moved / "latents", moved / "rounds" / "01" / "latents"], out, "data")
    assert again == record
    start_run(out, {"data": again}, "train-rnn")
    # other inputs are another record (refused by start_run as another config)
    assert input_folders([moved / "latents"], out, "data") != record
    # a record of an earlier version named the folders by absolute path: kept as it was
    old = tmp_path / "old"
    absolute = [str((tmp_path / "latents").resolve())]
    start_run(old, {"data": absolute}, "train-rnn")
    assert input_folders([tmp_path / "latents"], old, "data") == absolute
    assert input_folders([tmp_path / "other"], old, "data") == [os.path.join("..", "other")]


def test_a_checkpoint_finds_its_parents_where_the_moved_run_folder_put_them(tmp_path):
    run = tmp_path / "run"
    c_path, vae = run / "controller" / "controller.pt", run / "vae" / "vae.pt"
    extra = {"vae_path": str(vae), **relative_parents(c_path, vae_path=vae)}
    assert extra["vae_path_rel"] == os.path.join("..", "vae", "vae.pt")
    assert recorded_parent(extra, "vae_path", c_path) == vae   # nothing there yet: as recorded
    moved = tmp_path / "moved" / "controller" / "controller.pt"
    moved.parent.mkdir(parents=True)
    (tmp_path / "moved" / "vae").mkdir()
    (tmp_path / "moved" / "vae" / "vae.pt").write_bytes(b"v")
    assert recorded_parent(extra, "vae_path", moved) == moved.parent / extra["vae_path_rel"]
    # a relative recorded path (the shipped agents') is read from the checkpoint's folder
    assert recorded_parent({"vae_path": "vae.pt"}, "vae_path", moved) == moved.parent / "vae.pt"
    assert recorded_parent({}, "vae_path", moved) is None


# --- logger ----------------------------------------------------------------------------------

def test_logger_writes_scalars_images_and_gif_videos(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from worldmodels.logger import Logger

    with Logger(tmp_path) as log:
        log.scalars({"vae/loss": 2.0}, step=1)
        log.image("vae/reconstructions", np.zeros((8, 8, 3), np.uint8), step=1)
        log.video("dream/video", np.zeros((4, 8, 8, 3), np.uint8), step=1)
    acc = EventAccumulator(str(tmp_path)).Reload()
    assert acc.Scalars("vae/loss")[0].value == 2.0
    assert set(acc.Tags()["images"]) == {"vae/reconstructions", "dream/video"}
    assert acc.Images("dream/video")[0].encoded_image_string[:6] == b"GIF89a"
    assert "vae/loss" in (tmp_path / "scalars.csv").read_text()


def test_logger_csv_after_a_kill_and_resume_has_one_row_per_step_and_tag(tmp_path):
    """A stage killed after logging steps 1-3 (the last row cut mid-write) and resumed from
    its checkpoint at step 2 replays steps 3-4: the CSV ends with steps 1-4 once each, step
    3 with the value of the run that went on."""
    import csv

    from worldmodels.logger import Logger

    with Logger(tmp_path) as log:
        for step in (1, 2, 3):
            log.scalars({"es/fitness_mean": float(step), "es/sigma": 0.1}, step=step)
    path = tmp_path / "scalars.csv"
    path.write_bytes(path.read_bytes() + b"4,es/fitn")          # the kill cut a row
    with Logger(tmp_path) as log:
        for step in (3, 4):
            log.scalars({"es/fitness_mean": 10.0 * step, "es/sigma": 0.1}, step=step)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), r["tag"]) for r in rows] == \
        [(s, t) for s in (1, 2, 3, 4) for t in ("es/fitness_mean", "es/sigma")]
    assert [float(r["value"]) for r in rows if r["tag"] == "es/fitness_mean"] == [1, 2, 30, 40]


def test_a_stage_removes_what_a_killed_checkpoint_save_left(tmp_path):
    """SIGKILL during atomic_write leaves `.NAME.XXXXXXXX.tmp`; the next run of the stage
    (which owns the folder) deletes it, and nothing else."""
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "rnn"
    folder.mkdir()
    code = ("import os, signal, sys; from worldmodels.utils import atomic_write\n"
            "def write(p):\n    p.write_bytes(b'half'); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write({str(folder / 'mdnrnn.pt')!r}, write)")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and left[0].startswith(".mdnrnn.pt.") and left[0].endswith(".tmp")
    (folder / "notes.tmp").write_text("mine")          # not atomic_write's: kept
    (folder / "mdnrnn.pt").write_bytes(b"old good checkpoint")
    start_run(folder, {"lr": 1.0}, "train-rnn")
    assert sorted(os.listdir(folder)) == ["config.json", "mdnrnn.pt", "notes.tmp", "run.lock"]


def test_atomic_writes_get_the_mode_of_an_ordinary_write(tmp_path):
    import os

    from worldmodels.utils import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").stat().st_mode == (tmp_path / "b.json").stat().st_mode


class _Foreign:
    pass


def test_a_checkpoint_with_foreign_objects_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"kind": "vae", "model": _Foreign()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "weights_only=False" not in message
    assert "not loaded" in message


def test_every_checkpoint_rebuilds_its_model_from_model_args(tmp_path):
    from worldmodels.agents.world_models_agent import load_controller

    from worldmodels.controller import Controller
    from worldmodels.mdnrnn import MDNRNN, load_mdnrnn
    from worldmodels.vae import load_vae

    for module, loader in ((ConvVAE(8), load_vae),
                           (MDNRNN(z_dim=8, hidden_size=16, n_gaussians=3, reward_heads=2),
                            load_mdnrnn),
                           (Controller(8, 16), load_controller)):
        kind = {"ConvVAE": "vae", "MDNRNN": "mdnrnn", "Controller": "controller"}[
            type(module).__name__]
        path = save_checkpoint(tmp_path / f"{kind}.pt", kind=kind, config={}, model=module.state_dict(),
                               model_args=module.model_args)
        args = load_checkpoint(path)["model_args"]
        assert type(module)(**args).model_args == module.model_args
        rebuilt, _ = loader(path)
        assert rebuilt.model_args == module.model_args


def test_a_manifest_line_cut_by_a_crash_does_not_wedge_the_folder(tmp_path):
    from worldmodels.data import MANIFEST, ShardError, append_manifest, read_manifest

    append_manifest(tmp_path, {"index": 0, "file": "ep_000000.npz"})
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"index": 1, "fi')            # the disk filled up mid-line
    assert [e["index"] for e in read_manifest(tmp_path)] == [0]   # with a warning
    append_manifest(tmp_path, {"index": 2, "file": "ep_000002.npz"})
    assert [e["index"] for e in read_manifest(tmp_path)] == [0, 2]
    (tmp_path / MANIFEST).write_text('{"index": 0, "file": "ep_000000.npz"}\n{"length": 3}\n')
    with pytest.raises(ShardError, match="line 2 is not a manifest entry"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("line", ['{"index": 0, "file": "../ep_000000.npz"}',
                                  '{"index": 0, "file": "/etc/passwd"}',
                                  '{"index": 0, "file": "sub/ep_000000.npz"}',
                                  '{"index": "0", "file": "ep_000000.npz"}',
                                  '{"index": -1, "file": "ep_000000.npz"}'])
def test_a_manifest_never_points_outside_its_folder(tmp_path, line):
    """A manifest's `file` is a shard name inside the folder; `../x`, absolute paths and
    sub-folders are refused (with the line), never followed."""
    from worldmodels.data import MANIFEST, ShardError, episode_files, read_manifest

    (tmp_path / "ep_000000.npz").write_bytes(b"x")
    (tmp_path / MANIFEST).write_text(line + "\n" + '{"index": 1, "file": "ep_000001.npz"}\n')
    with pytest.raises(ShardError, match="line 1"):
        read_manifest(tmp_path)
    with pytest.raises(ShardError, match="line 1"):
        episode_files(tmp_path)


# --- streaming: read-ahead and batches across episodes ---------------------------------------

def test_prefetch_yields_in_order_raises_the_workers_error_and_stops_early():
    import threading

    from worldmodels.utils import Prefetch

    with Prefetch(iter(range(10)), ahead=2) as items:
        assert list(items) == list(range(10))

    def failing():
        yield 1
        raise ShardError("bad shard")

    items = Prefetch(failing(), ahead=1)
    seen = []
    with pytest.raises(ShardError, match="bad shard"):
        for x in items:
            seen.append(x)
    assert seen == [1]
    items.close()

    produced, closed = [], threading.Event()

    def endless():
        try:
            for i in range(10**9):
                produced.append(i)
                yield i
        finally:
            closed.set()

    items = Prefetch(endless(), ahead=3)
    for x in items:
        if x == 4:
            break
    items.close()   # returns: the worker stopped although the producer had more
    assert closed.is_set() and len(produced) <= 4 + 1 + 3 + 1


def test_batches_across_chunks_fill_every_batch_but_the_last():
    from worldmodels.data import batches_across

    chunks = [np.arange(5), np.arange(0), np.arange(100, 103), np.arange(200, 209)]
    out = list(batches_across(chunks, 4, lambda c: c))
    assert [len(b) for b, _ in out] == [4, 4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in out]), np.concatenate(chunks))
    batch, pieces = out[1]   # frame 4 of the first chunk, then the third chunk
    assert [(c is chunks[i], a, b) for (c, a, b), i in zip(pieces, (0, 2))] == \
        [(True, 4, 5), (True, 0, 3)]
    assert np.shares_memory(out[0][0], chunks[0])   # one piece: a view, not a copy


# --- torch threads -------------------------------------------------------------------------

def test_threads_leave_busy_cores_alone():
    from worldmodels.cli import choose_threads

    assert choose_threads(None, cores=2, load=0.1) == (2, "")            # idle: every core
    threads, why = choose_threads(None, cores=2, load=2.3)               # another run is busy
    assert threads == 1 and "load average 2.3 on 2 cores" in why and "--threads" in why
    assert choose_threads(None, cores=16, load=4.0)[0] == 12
    assert choose_threads(3, cores=2, load=9.0) == (3, "")               # asked for: obeyed


def test_threads_option_sets_torch_threads(tmp_path, capsys):
    import torch

    from worldmodels import cli

    before = torch.get_num_threads()
    try:
        # A command that fails at once (no such data folder) still ran with the threads set.
        assert cli.main(["--threads", "1", "train-vae", "--data", str(tmp_path / "none"),
                         "--out", str(tmp_path / "v")]) == 2
        assert torch.get_num_threads() == 1
        assert cli.main(["--threads", "0", "train-vae", "--data", "x", "--out", "y"]) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_every_package_folder_is_installed_by_a_regular_pip_install():
    # pyproject lists the packages by hand (envs/ and agents/ are mapped into worldmodels): a
    # subpackage missing from the list works in an editable install and is absent from a wheel.
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parent.parent
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(tool["packages"]), tool["package-dir"]
    found = set()
    for name, folder in dirs.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((name, *rel)))
    assert "worldmodels.commands" in found
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
