"""Bad config values are refused up front: a one-line error naming the option, exit status
2, and nothing written (issue "Nothing wedges a run", case 4 and case 9)."""

import math
from dataclasses import fields

import pytest

from worldmodels import cli
from worldmodels.config import (
    CollectConfig,
    ControllerConfig,
    EnvConfig,
    EvalConfig,
    IterateConfig,
    MDNRNNConfig,
    VAEConfig,
)

BAD = [
    ("train-controller", "--controller.temperature", "nan"),
    ("train-controller", "--controller.temperature", "-1"),
    ("train-controller", "--controller.sigma0", "0"),
    ("train-controller", "--controller.generations", "0"),
    ("train-controller", "--controller.popsize", "1"), ("train-controller", "--controller.seed", "-1"),
    ("train-controller", "--controller.dream-dropout", "1"),
    ("train-controller", "--controller.mode", "both"),
    ("train-rnn", "--rnn.lr", "nan"), ("train-rnn", "--rnn.batch-size", "0"),
    ("train-rnn", "--rnn.seq-len", "0"), ("train-rnn", "--rnn.grad-clip", "-1"),
    ("train-rnn", "--rnn.epochs", "0"), ("train-rnn", "--rnn.z-dim", "0"),
    ("train-rnn", "--rnn.lr", "inf"), ("train-rnn", "--rnn.epochs", "abc"),
    ("train-vae", "--vae.lr", "nan"), ("train-vae", "--vae.epochs", "0"),
    ("train-vae", "--vae.seed", "-1"),
    ("collect", "--collect.episodes", "0"), ("collect", "--collect.action-noise", "-0.1"),
    ("collect", "--collect.brownian-share", "1.5"), ("collect", "--collect.policy", "greedy"),
    ("evaluate", "--eval.workers", "0"), ("evaluate", "--env.max-steps", "-1"),
    # huge counts are refused at once instead of hanging (case 15)
    ("collect", "--collect.episodes", "10000000000"), ("evaluate", "--eval.episodes", "10000000000"),
    ("train-controller", "--controller.generations", "10000000000"),
    ("train-rnn", "--rnn.hidden-size", "10000000000"),
]
INPUTS = {
    "train-controller": ["--vae", "V.pt", "--rnn", "M.pt"],
    "train-rnn": ["--data", "LATENTS"], "train-vae": ["--data", "ROLLOUTS"],
    "collect": [], "evaluate": ["--policy", "random"],
}


@pytest.mark.parametrize("command, option, value", BAD)
def test_a_bad_value_is_a_one_line_error_naming_the_option_and_writes_nothing(
        tmp_path, capsys, command, option, value):
    out = tmp_path / "out"
    argv = [command, *INPUTS[command], option, value, "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err, err
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_pipeline_refuses_the_value_before_creating_the_run_folder(tmp_path, capsys, value):
    run = tmp_path / "run"
    assert cli.main(["pipeline", "--preset", "debug", "--run-dir", str(run),
                     "--controller.temperature", value]) == 2
    assert "--controller.temperature" in capsys.readouterr().err and not run.exists()


@pytest.mark.parametrize("cls", [EnvConfig, CollectConfig, VAEConfig, MDNRNNConfig,
                                 ControllerConfig, EvalConfig, IterateConfig])
def test_every_float_field_refuses_non_finite_values(cls):
    for f in fields(cls):
        if isinstance(f.default, float):
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(ValueError, match=f.name):
                    cls(**{f.name: bad})


@pytest.mark.parametrize("argv, option", [
    (["dream", "--agent", "carracing", "--record", "x.gif", "--fps", "0"], "--fps"),
    (["dream", "--agent", "carracing", "--record", "x.gif", "--size", "-5"], "--size"),
    (["play", "--agent", "carracing", "--record", "x.gif", "--every", "0"], "--every"),
    (["encode", "--data", "D", "--vae", "V.pt", "--out", "OUT", "--batch-size", "0"], "--batch-size"),
])
def test_sizes_and_rates_below_one_are_refused_by_name(tmp_path, capsys, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {option}: must be in [1" in err, err
    assert list(tmp_path.iterdir()) == []


def test_missing_gpu_or_a_file_as_run_folder_is_refused_before_anything_is_written(
        tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    assert cli.main(["pipeline", "--preset", "debug", "--run-dir", str(run), "--device", "cuda"]) == 2
    assert "--device cuda asked for, but torch sees no CUDA device" in capsys.readouterr().err
    assert not run.exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert cli.main(["pipeline", "--preset", "debug", "--run-dir", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert cli.main(["collect", "--preset", "debug", "--out", str(a_file)]) == 2
    assert "is a file; collect writes a folder there" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"


# Every command, fed a bad value: exit status 2, one line naming it, the output untouched.
EVERY_COMMAND = [
    (["pipeline", "--preset", "debug", "--run-dir", "OUT", "--iterate.rounds", "-1"], "--iterate.rounds"),
    (["pipeline", "--preset", "debug", "--preset", "nonsense", "--run-dir", "OUT"], "--preset"),
    (["pipeline", "--run-dir", "OUT", "--vae.batch-size", "many"], "--vae.batch-size"),
    (["collect", "--preset", "debug", "--out", "OUT", "--env.env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["encode", "--data", "NOWHERE", "--vae", "V.pt", "--out", "OUT"], "NOWHERE"),
    (["train-vae", "--data", "NOWHERE", "--out", "OUT"], "NOWHERE"),
    (["train-rnn", "--data", "NOWHERE", "--out", "OUT"], "NOWHERE"),
    (["train-controller", "--vae", "NO_V.pt", "--rnn", "NO_M.pt", "--out", "OUT"], "NO_V.pt"),
    (["evaluate", "--controller", "NO_C.pt", "--out", "OUT"], "NO_C.pt"),
    (["evaluate", "--policy", "random", "--eval.episodes", "0", "--out", "OUT"], "--eval.episodes"),
    (["play", "--controller", "NO_C.pt", "--record", "OUT"], "NO_C.pt"),
    (["play", "--agent", "no-such-agent", "--record", "OUT"], "no-such-agent"),
    (["dream", "--vae", "NO_V.pt", "--rnn", "NO_M.pt", "--record", "OUT"], "OUT"),
    (["dream", "--agent", "carracing", "--record", "OUT.gif", "--steps", "0"], "--steps"),
    (["figures", "--run-dir", "NOWHERE", "--out", "OUT"], "NOWHERE"),
    (["export-agent", "--controller", "NO_C.pt", "--out", "OUT", "--name", "x", "--label", "x"],
     "NO_C.pt"),
    (["bench", "--only", "nothing", "--out", "OUT"], "--only"),
    (["bench", "--cluster.backend", "spark", "--out", "OUT"], "--cluster.backend"),
]


@pytest.mark.parametrize("argv, named", EVERY_COMMAND,
                         ids=[f"{argv[0]}-{named}" for argv, named in EVERY_COMMAND])
def test_every_command_refuses_bad_input_in_one_line_and_writes_nothing(
        tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert list(tmp_path.iterdir()) == []
