"""One config syntax on every command: ``--SECTION.FIELD VALUE`` options generated from the
config dataclasses, over presets composed in order (a full preset, then overlays)."""

import argparse
from dataclasses import fields, replace
from typing import get_args, get_type_hints

import pytest

from worldmodels import cli
from worldmodels.config import (
    OVERLAYS,
    PRESETS,
    SECTIONS,
    ControllerConfig,
    IterateConfig,
    Preset,
    compose_presets,
    field_docs,
    from_dict,
    option,
    to_dict,
)


def parse(*argv: str) -> argparse.Namespace:
    return cli.parse_args(cli.build_parser(), argv)


def pipeline_preset(*argv: str) -> Preset:
    return cli.preset_from_args(parse("pipeline", "--run-dir", "RUN", *argv))


def test_dotted_options_reach_their_section():
    args = parse("train-rnn", "--data", "D", "--out", "O", "--preset", "debug",
                 "--rnn.epochs", "7", "--rnn.seq-len", "11", "--rnn.lr", "0.5")
    assert cli.config_from_args(args, "rnn") == replace(PRESETS["debug"].rnn, epochs=7,
                                                        seq_len=11, lr=0.5)
    args = parse("train-controller", "--vae", "V", "--rnn", "M", "--out", "O",
                 "--controller.popsize", "6", "--env.max-steps", "500",
                 "--controller.dream-start", "branch", "--cluster.backend", "ray")
    assert cli.config_from_args(args, "controller") == replace(
        PRESETS["laptop"].controller, popsize=6, dream_start="branch")
    assert cli.config_from_args(args, "env") == replace(PRESETS["laptop"].env, max_steps=500)
    assert cli.config_from_args(args, "cluster").backend == "ray"


def test_fields_of_the_same_name_in_two_sections_stay_apart():
    preset = pipeline_preset("--preset", "debug", "--collect.seed", "5", "--rnn.seed", "7",
                             "--collect.episodes", "50", "--iterate.episodes", "60",
                             "--collect.workers", "1", "--eval.workers", "3")
    debug = PRESETS["debug"]
    assert (preset.collect.seed, preset.rnn.seed, preset.vae.seed, preset.controller.seed) == (
        5, 7, debug.vae.seed, debug.controller.seed)
    assert (preset.collect.episodes, preset.iterate.episodes, preset.eval.episodes) == (
        50, 60, debug.eval.episodes)
    assert (preset.collect.workers, preset.eval.workers, preset.controller.workers) == (
        1, 3, debug.controller.workers)


def test_booleans_take_a_no_form_and_literals_their_values():
    preset = pipeline_preset("--no-rnn.predict-done", "--iterate.warm-start",
                             "--controller.mode", "real")
    assert (preset.rnn.predict_done, preset.iterate.warm_start) == (False, True)
    assert preset.rnn.predict_reward is True   # not given: the preset's
    assert pipeline_preset("--rnn.predict-done").rnn.predict_done is True


def test_every_field_of_every_section_is_an_option_of_pipeline_with_its_docstring(capsys):
    laptop, parser = pipeline_preset(), cli.build_parser()
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            # a value other than the default, of the field's type, must reach the field
            default, kind = getattr(getattr(laptop, section), f.name), hints[f.name]
            flag = option(section, f.name)
            if kind is bool:
                value, argv = not default, [flag.replace("--", "--no-", 1) if default else flag]
            else:
                value = (next(c for c in get_args(kind) if c != default) if get_args(kind)
                         else default + 1 if kind is int else default / 2 + 0.25 if kind is float
                         else default + "x")
                argv = [flag, str(value)]
            args = cli.parse_args(parser, ["pipeline", "--run-dir", "RUN", *argv])
            assert vars(args)[f"{section}.{f.name}"] == value, argv
    with pytest.raises(SystemExit):
        cli.main(["pipeline", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        for f in fields(cls):
            assert docs[f.name][:40] in text, (section, f.name)


def test_presets_compose_in_order_and_explicit_options_win():
    assert pipeline_preset() == PRESETS["laptop"]                      # the default
    dream_branch = pipeline_preset("--preset", "laptop-real", "--preset", "dream-e1",
                                   "--preset", "branch")
    assert dream_branch.name == "laptop-real+dream-e1+branch"
    assert dream_branch.controller.rollouts_per_candidate == 32       # branch over dream-e1
    assert dream_branch.controller.dream_start == "branch" and dream_branch.iterate.rounds == 4
    branch_dream = pipeline_preset("--preset", "branch", "--preset", "dream-e1")  # over laptop
    assert branch_dream.name == "laptop+branch+dream-e1"
    assert branch_dream.controller.rollouts_per_candidate == 8        # dream-e1 over branch
    assert branch_dream.controller.dream_max_steps == 200             # what laptop holds
    explicit = pipeline_preset("--controller.rollouts-per-candidate", "4", "--preset",
                               "laptop-real",
                               "--preset", "dream-e1", "--preset", "branch",
                               "--iterate.rounds", "1")
    assert explicit == replace(
        dream_branch, controller=replace(dream_branch.controller, rollouts_per_candidate=4),
        iterate=replace(dream_branch.iterate, rounds=1))
    # The resolved preset (what RUN/preset.json holds) reads back as it was.
    assert from_dict(Preset, to_dict(explicit)) == explicit


# collect.max_steps of every preset of 0.1.0 (each equal to its env.max_steps), removed since
COLLECT_MAX_STEPS_0_1_0 = {"debug": 100, "laptop": 1000, "laptop-real": 1000, "paper": 1000,
                           "laptop-dream": 1000,
                           "doom-debug": 100, "doom-laptop": 2100, "doom-paper": 2100}


def test_a_preset_json_of_0_1_0_reads_back_unless_its_collect_max_steps_cut_episodes():
    assert set(COLLECT_MAX_STEPS_0_1_0) == set(PRESETS)
    for name, max_steps in COLLECT_MAX_STEPS_0_1_0.items():
        old = to_dict(PRESETS[name])          # RUN/preset.json as 0.1.0 wrote it
        old["collect"]["max_steps"] = max_steps
        assert from_dict(Preset, old) == PRESETS[name], name
    old["env"]["max_steps"] = 500             # 0.1.0's `--env.max-steps 500` alone: as now
    assert from_dict(Preset, old).env.max_steps == 500
    old["collect"]["max_steps"] = 50          # collect's own limit cut the episodes
    with pytest.raises(ValueError, match=r"^collect.max_steps 50 with env.max_steps 500 cannot "
                                         r"be expressed any more: collect.max_steps was removed "
                                         r"after 0\.1\.0, env.max_steps sets both$"):
        from_dict(Preset, old)


def test_laptop_is_laptop_real_with_the_dream_overlay():
    real = PRESETS["laptop-real"]
    assert real.controller.mode == "real" and real.iterate.rounds == 0
    assert PRESETS["laptop"].controller.mode == "dream"   # the default trains C in the dream
    assert PRESETS["laptop-dream"] == replace(PRESETS["laptop"], name="laptop-dream")  # old name
    assert PRESETS["laptop"] == replace(
        real, name="laptop",
        rnn=replace(real.rnn, dropout=0.05, reward_clip=5.0),
        controller=ControllerConfig(mode="dream", popsize=32, rollouts_per_candidate=32,
                                    generations=20, eval_every=10, eval_episodes=16,
                                    dream_start="branch", dream_max_steps=200,
                                    dream_dropout=0.1),
        iterate=IterateConfig(rounds=2, episodes=100, models=4, controllers=2,
                              round0_controllers=1),
        collect=replace(real.collect, episode_offset=0.15, action_noise_dims="0,1"))
    # E13's settings: E9's command (docs/dream_experiments.md) with one round of four Ms, and
    # E24's episode offset in round 1
    e9 = pipeline_preset("--preset", "laptop-real", "--preset", "dropout", "--preset", "branch",
                         "--controller.mode", "dream", "--controller.popsize", "32",
                         "--controller.generations", "20", "--controller.eval-every", "10",
                         "--controller.eval-episodes", "16", "--controller.real-max-steps", "0",
                         "--iterate.rounds", "2", "--iterate.episodes", "100",
                         "--rnn.reward-clip", "5", "--iterate.rounds", "1", "--iterate.models", "4",
                         "--collect.episode-offset", "0.15", "--collect.action-noise-dims", "0,1",
                         "--iterate.rounds", "2", "--iterate.controllers", "2",
                         "--iterate.round0-controllers", "1")
    assert replace(e9, name="laptop") == PRESETS["laptop"]
    offset = {"collect": replace(real.collect, episode_offset=0.15, action_noise_dims="0,1"),
              "iterate": IterateConfig(rounds=2, episodes=100, models=4, controllers=2,
                                         round0_controllers=1)}
    assert replace(compose_presets(["laptop-real", "dream"]), name="laptop",
                   **offset) == PRESETS["laptop"]
    again = compose_presets(["laptop", "dream"])   # the overlay's one round over laptop's two
    assert replace(again, name="laptop", iterate=replace(again.iterate, rounds=2)) == \
        PRESETS["laptop"]
    for name in OVERLAYS:    # every overlay applies over every full preset
        for full in PRESETS:
            compose_presets([full, name])


def test_a_full_preset_after_the_first_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["pipeline", "--run-dir", str(run), "--preset", "laptop",
                     "--preset", "debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--preset debug is a full preset" in err, err
    assert not run.exists()


def test_collect_policy_choices_are_the_policies_of_every_world():
    from agents.random_policies import WORLD_POLICIES
    from worldmodels.config import literal_choices

    names = {name for policies in WORLD_POLICIES.values() for name in policies}
    assert set(literal_choices(SECTIONS["collect"])["policy"]) == names | {"agent"}


def test_a_checkpoint_option_and_the_section_of_the_same_name_do_not_clash():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--rnn", help="M checkpoint")
    cli.add_config_arguments(parser, "rnn")
    args = parser.parse_args(["--rnn.epochs", "3", "--rnn", "m.pt", "--rnn.seq-len=9"])
    assert args.rnn == "m.pt"
    assert cli.config_from_args(args, "rnn") == replace(PRESETS["laptop"].rnn, epochs=3,
                                                        seq_len=9)
    # On the commands: --rnn is M's checkpoint, the rnn section is pipeline's.
    args = parse("evaluate", "--rnn", "m.pt", "--controller", "c.pt", "--env.max-steps", "9")
    assert (str(args.rnn), str(args.controller), getattr(args, "env.max_steps")) == (
        "m.pt", "c.pt", 9)
    with pytest.raises(cli.UsageError, match="unrecognized arguments: --rnn m.pt"):
        parse("pipeline", "--run-dir", "RUN", "--rnn", "m.pt")


@pytest.mark.parametrize("argv, message", [
    (["train-rnn", "--data", "D", "--out", "O", "--epochs", "3"],
     "unrecognized arguments: --epochs 3; did you mean --rnn.epochs?"),
    (["train-controller", "--vae", "V", "--rnn", "M", "--out", "O", "--popsize", "6"],
     "unrecognized arguments: --popsize 6; did you mean --controller.popsize?"),
    (["collect", "--out", "O", "--seed", "1"], "did you mean --collect.seed?"),
    (["evaluate", "--policy", "random", "--episodes", "2"], "did you mean --eval.episodes?"),
    (["evaluate", "--policy", "random", "--max-steps", "2"], "did you mean --env.max-steps?"),
    (["pipeline", "--run-dir", "RUN", "--generations", "2"],
     "did you mean --controller.generations?"),
    (["pipeline", "--run-dir", "RUN", "--set", "controller.popsize=6"],
     "unrecognized arguments: --set controller.popsize=6; config options are --SECTION.FIELD"),
    (["pipeline", "--run-dir", "RUN", "--rnn.nope", "1"], "unrecognized arguments: --rnn.nope 1"),
    (["pipeline", "--run-dir", "RUN", "--rnn.epoch", "1"],       # no abbreviations
     "unrecognized arguments: --rnn.epoch 1"),
    (["pipeline", "--run-dir", "RUN", "--rnn.seq_len", "1"],     # one spelling: dashes
     "unrecognized arguments: --rnn.seq_len 1"),
    (["pipeline", "--run-dir", "RUN", "--vae.lr", "fast"],
     "argument --vae.lr: invalid float value: 'fast'"),
    (["pipeline", "--run-dir", "RUN", "--eval.use-mu", "yes"],
     "unrecognized arguments: yes"),
    (["pipeline", "--run-dir", "RUN", "--preset", "nope"],
     "argument --preset: invalid choice: 'nope'"),
])
def test_unknown_options_and_bad_values_are_a_one_line_error_naming_them(tmp_path, capsys, argv,
                                                                          message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith(f"worldmodels {argv[0]}: error: ")
