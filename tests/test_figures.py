"""`worldmodels figures`: the README's PNGs from a run folder.

The run folder is built in a second: synthetic rollouts (conftest), tiny random V, M and C
checkpoints (test_controller), scalars.csv files written through the project's Logger and an
eval/results.json.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import _write_rollouts

from worldmodels.cli import main
from worldmodels.commands import figures
from worldmodels.logger import Logger
from worldmodels.testing import save_controller, tiny_world_models
from worldmodels.video import upscale

LENGTHS = (30, 25, 40)
SIZE = 64  # frame side in the test's image grids (--size)
ORANGE, GREEN = (255, 127, 14), (44, 160, 44)  # matplotlib's C1, C2: validation / real env, test


def write_scalars(run: Path) -> None:
    with Logger(run / "tb" / "vae") as log:
        for step in range(10, 410, 10):
            log.scalars({"vae/loss": 2000 / step + 30, "vae/recon": 1.0, "vae/kl": 1.0}, step)
        for step in (200, 400):
            log.scalar("vae/val_loss", 2000 / step + 35, step)
    with Logger(run / "tb" / "rnn") as log:
        for step in range(1, 61):
            log.scalar("mdnrnn/loss", 1.5 - step / 40 + 0.1 * np.sin(step), step)
        for step in (30, 60):
            log.scalar("mdnrnn/val_loss", 1.2 - step / 60, step)
    with Logger(run / "tb" / "controller") as log:
        for gen in range(1, 13):
            log.scalars({"es/fitness_best": 10 * gen, "es/fitness_mean": 6 * gen - 5,
                         "es/fitness_worst": 2 * gen - 20, "es/sigma": 0.1}, gen)
            if gen % 4 == 0:
                log.scalars({"eval/real_return_mean": 8 * gen, "eval/real_return_std": 10.0,
                             "eval/real_steps": 1000 * gen}, gen)


def build_run(root: Path, stages: tuple[str, ...] = ("vae", "rnn", "controller", "eval")) -> Path:
    """A run folder with rollouts and the given finished stages' outputs."""
    run = root / "run"
    _write_rollouts(run / "rollouts", lengths=LENGTHS)
    vae_src, rnn_src = tiny_world_models(root)
    vae, rnn = run / "vae" / "vae.pt", run / "rnn" / "mdnrnn.pt"
    vae.parent.mkdir(parents=True)
    shutil.copy(vae_src, vae)
    if "rnn" in stages:
        rnn.parent.mkdir(parents=True)
        shutil.copy(rnn_src, rnn)
    if "controller" in stages:
        save_controller(run / "controller" / "controller_best.pt", vae, rnn)
    write_scalars(run)
    for stage in {"vae", "rnn", "controller"} - set(stages):
        shutil.rmtree(run / "tb" / stage)
    if "eval" in stages:
        (run / "eval").mkdir()
        (run / "eval" / "results.json").write_text(json.dumps(
            {"returns": [100.0, 140.0], "summary": {"episodes": 2, "mean": 120.0, "std": 20.0,
                                                    "min": 100.0, "max": 140.0}}))
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("figures"))


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def test_all_figures(run_dir, capsys):
    out = run_dir / "pngs"
    assert main(["figures", "--run-dir", str(run_dir), "--out", str(out), "--size", str(SIZE),
                 "--steps", "20", "--every", "5", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [  # and no temporary files
        "dream_strip.png", "learning_curves.png", "reconstruction.png", "sample_efficiency.png"]
    label, gap = figures.LABEL_WIDTH, figures.GAP

    def titles(height: int, rows: int, n_titles: int) -> int:
        """Lines of title text, given an image's height (titles wrap to the width)."""
        text = height - rows * SIZE - (rows - 1) * gap - n_titles * 12
        assert text % figures.TITLE_LINE == 0 and text >= n_titles * figures.TITLE_LINE
        return text // figures.TITLE_LINE

    def rows_showing(image: np.ndarray, frame: np.ndarray, column: int) -> list[int]:
        """Top rows y where the panel at (y, column) shows ``frame``, upscaled (its lower-right
        quarter, clear of the panel's label)."""
        x, q = label + column * SIZE, SIZE // 2
        want = upscale(frame, SIZE)[q:, q:]
        return [y for y in range(image.shape[0] - SIZE + 1)
                if np.array_equal(image[y + q:y + SIZE, x + q:x + SIZE], want)]

    # reconstruction.png: a title, real frames over reconstructions, 8 columns.
    recon = read_png(out / "reconstruction.png")
    assert recon.shape[1:] == (label + 8 * SIZE, 3)
    lines = titles(recon.shape[0], rows=2, n_titles=1)
    # The tiny V holds out val_episodes=20 >= 3 episodes, so frames come from all 95 frames;
    # column 0 is position int(0.5 * 95 / 8) = 5: episode 0, t=5, in the top row.
    from worldmodels.data import read_shard

    ep0 = read_shard(run_dir / "rollouts" / "ep_000000.npz")["obs"]
    assert rows_showing(recon, ep0[5], 0) == [lines * figures.TITLE_LINE + 12]
    assert "drawing from all of them" in capsys.readouterr().out

    # dream_strip.png: t = 0, 5, ..., 20 (5 columns); a titled dream row, then a titled block
    # of 3 rows (real | M open loop | difference).
    strip = read_png(out / "dream_strip.png")
    assert strip.shape[1:] == (label + 5 * SIZE, 3)
    lines = titles(strip.shape[0], rows=4, n_titles=2)
    # Episode 0 (30 frames) is the first long enough for 20 steps: its frame 5 is the second
    # panel of the real row, the first row of the second block.
    assert rows_showing(strip, ep0[5], 1) == [lines * figures.TITLE_LINE + 2 * 12 + SIZE + gap]

    # learning_curves.png: three 640 x 420 panels, none blank.
    curves = read_png(out / "learning_curves.png")
    assert curves.shape == (420, 3 * 640, 3)
    for i in range(3):
        plot = curves[:, i * 640:(i + 1) * 640]
        assert (plot < 200).any(axis=2).mean() > 0.01  # text, axes and lines drawn
    # The validation losses and real-env evaluations in orange; the test score (eval/
    # results.json) in green, in C's panel only.
    def pixels(image: np.ndarray, color: tuple[int, int, int]) -> int:
        return int((np.abs(image.astype(int) - color).sum(axis=2) < 30).sum())

    assert all(pixels(curves[:, i * 640:(i + 1) * 640], ORANGE) > 50 for i in range(3))
    assert pixels(curves[:, :1280], GREEN) == 0 and pixels(curves[:, 1280:], GREEN) > 50


@pytest.mark.slow
def test_default_out_and_the_script(run_dir, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts" / "figures.py"), "--run-dir",
                           str(run_dir), "--only", "learning_curves"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "figures" / "learning_curves.png").is_file()
    assert not (run_dir / "figures" / "reconstruction.png").exists()


def test_missing_inputs(tmp_path, capsys):
    run = build_run(tmp_path, stages=("vae",))
    out = tmp_path / "pngs"
    argv = ["figures", "--run-dir", str(run), "--out", str(out), "--size", str(SIZE),
            "--device", "cpu"]
    # Without --skip-missing: exit status 2, the missing file named, nothing drawn.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "worldmodels figures: error: missing" in err and str(run / "rnn" / "mdnrnn.pt") in err
    assert not out.exists()
    with pytest.raises(figures.MissingInput, match=r"tb/rnn/scalars\.csv"):
        figures.check_inputs(run, "learning_curves")
    # With it: the figures that can be drawn are, the others skipped with a note.
    assert main(argv + ["--skip-missing"]) == 0
    printed = capsys.readouterr().out
    assert "skipping dream_strip.png: missing" in printed and "mdnrnn.pt" in printed
    assert "leaving out the rnn panel" in printed and "leaving out the controller panel" in printed
    assert sorted(p.name for p in out.iterdir()) == ["learning_curves.png", "reconstruction.png"]
    assert read_png(out / "learning_curves.png").shape == (420, 640, 3)  # V's panel only
    # No rollouts at all: the manifest is named.
    shutil.rmtree(run / "rollouts")
    with pytest.raises(figures.MissingInput, match=r"rollouts/manifest\.jsonl"):
        figures.check_inputs(run, "reconstruction")
    assert main(["figures", "--run-dir", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_sample_efficiency(run_dir, tmp_path, capsys):
    # A pipeline run: each validation at collection (95 steps) + C's real steps so far.
    p = figures.efficiency_points(run_dir)
    assert p.steps == [95 + 4000, 95 + 8000, 95 + 12000] and p.scores == [32.0, 64.0, 96.0]
    assert p.test == (120.0, 20.0) and p.test_steps == 95 + 12000
    # A run of iterate: one point per round, at iterate.json's cumulative steps.
    it = tmp_path / "it"
    it.mkdir()
    rounds = [{"round": 0, "best_val_return": -80.0, "real_steps_cumulative": 200_000},
              {"round": 1, "best_val_return": 150.0, "real_steps_cumulative": 260_000},
              {"round": 2, "best_val_return": None, "real_steps_cumulative": 300_000}]
    (it / "iterate.json").write_text(json.dumps({"rounds": rounds, "real_steps_total": 300_000}))
    p = figures.efficiency_points(it)
    assert (p.steps, p.scores, p.test, p.test_steps) == (
        [200_000, 260_000], [-80.0, 150.0], None, 300_000)
    # A run logged before eval/real_steps existed: its best validation at its total.
    old = build_run(tmp_path / "old", stages=("vae", "rnn", "controller", "eval"))
    rows = (old / "tb" / "controller" / "scalars.csv").read_text().splitlines()
    (old / "tb" / "controller" / "scalars.csv").write_text(
        "\n".join(r for r in rows if "eval/real_steps" not in r) + "\n")
    (old / "controller" / "done.json").write_text(json.dumps(
        {"best_real": 70.0, "real_steps": 3000, "train_real_steps": 50_000}))
    p = figures.efficiency_points(old)
    assert (p.steps, p.scores, p.test, p.test_steps) == ([53_095], [70.0], (120.0, 20.0), 53_095)
    # Several runs in one figure, one colour each (matplotlib's C0, C1).
    out = tmp_path / "pngs"
    argv = ["figures", "--run-dir", str(run_dir), "--only", "sample_efficiency", "--out", str(out)]
    assert main(argv + ["--compare", str(old)]) == 0
    image = read_png(out / "sample_efficiency.png")
    blue = (31, 119, 180)
    for color in (blue, ORANGE):
        assert int((np.abs(image.astype(int) - color).sum(axis=2) < 30).sum()) > 50, color
    capsys.readouterr()
    assert main(argv + ["--compare", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--compare" in err and str(tmp_path / "nope") in err
    # Nothing to plot: neither a validation nor a test score, named.
    empty = build_run(tmp_path / "empty", stages=("vae",))
    with pytest.raises(figures.MissingInput, match="train-controller"):
        figures.efficiency_points(empty)


def test_held_out_and_scalars(tmp_path):
    entries = [{"index": i} for i in range(5)]
    assert figures.held_out(entries, 2) == entries[3:]  # the end of the manifest, as train-vae
    assert figures.held_out(entries, 5) == entries
    with Logger(tmp_path) as log:
        log.scalars({"a": 1.0, "b": 5.0}, 2)
        log.scalar("a", 0.0, 1)
    with Logger(tmp_path) as log:  # a resumed stage logs step 2 again
        log.scalar("a", 3.0, 2)
    scalars = figures.read_scalars(tmp_path / "scalars.csv")
    np.testing.assert_array_equal(scalars["a"][0], [1, 2])
    np.testing.assert_array_equal(scalars["a"][1], [0.0, 3.0])  # sorted; the last value wins
    (tmp_path / "bad.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match="not a scalars.csv"):
        figures.read_scalars(tmp_path / "bad.csv")


def test_without_matplotlib(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    argv = ["figures", "--run-dir", str(run_dir), "--out", str(tmp_path), "--size", str(SIZE),
            "--device", "cpu"]
    # The image grids need no matplotlib; the plots fail before anything is drawn.
    assert main(argv + ["--only", "reconstruction"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "worldmodels figures: error: learning_curves.png needs matplotlib, which is not "
        'installed: pip install "worldmodels[figures]"')
    assert [p.name for p in tmp_path.iterdir()] == ["reconstruction.png"]


def test_plots():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # smooth: a centred average, the ends kept.
    y = np.array([0.0, 10, 0, 10, 0, 10] * 20 + [0.0])
    smoothed = figures.smooth(y)
    assert smoothed[0] == 0 and smoothed[-1] == 0
    assert np.abs(smoothed[5:-5] - 5).max() < 2  # the zigzag averages out

    # A loss falling by orders of magnitude gets a log axis; a panel with no loss is an error.
    ax = Figure().subplots()
    steps = np.arange(1.0, 101)
    figures.loss_panel(ax, {"m/loss": (steps, 1000 / steps**2)}, "m", Path("s.csv"), "M")
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="neither m/loss nor m/val_loss"):
        figures.loss_panel(ax, {"x": (steps, steps)}, "m", Path("s.csv"), "M")

    # A legend that would hide a curve wherever it goes gets a free band above the data.
    fig = Figure(figsize=(6.4, 4.2))
    canvas, ax = FigureCanvasAgg(fig), fig.subplots()
    for i in range(12):  # curves across the whole plot, every ~25 pixels
        ax.plot(steps, i + np.sin(steps / 3), label=f"curve {i}" if i < 4 else None)
    legend = ax.legend(loc="best")
    canvas.draw()
    data_top = ax.get_ylim()[1]
    figures.clear_legend(legend, canvas.get_renderer())
    canvas.draw()
    box = legend.get_window_extent(canvas.get_renderer())
    assert ax.get_ylim()[1] > data_top
    assert not any(line.get_transform().transform_path(line.get_path()).intersects_bbox(box)
                   for line in ax.get_lines())


def test_dream_strip_of_a_take_cover_run(tmp_path, monkeypatch):
    """A Take Cover run (one action input, no reward head, C mapped to thirds): the strip's
    dream is the one C was trained in (its world's action map and survival reward, its
    temperature and dream dropout), and the open loop reads the episode's 1-dim actions."""
    from worldmodels.config import ControllerConfig
    from worldmodels.controller import Controller
    from worldmodels.dream import BatchedDream
    from worldmodels.testing import H, Z

    run = tmp_path / "run"
    _write_rollouts(run / "rollouts", lengths=(30, 40), world="take_cover")
    vae, rnn = tiny_world_models(run, action_dim=1, predict_reward=False, done_bias=-8.0,
                                 names=("vae/vae.pt", "rnn/mdnrnn.pt"))  # M never ends the dream
    cfg = ControllerConfig(temperature=0.7, dream_dropout=0.1, done_threshold=0.4)
    save_controller(run / "controller" / "controller_best.pt", vae, rnn, action_dim=1,
                    action_map="thirds", config=cfg)
    c = Controller(Z, H, action_dim=1, action_map="thirds")

    built = []
    original = BatchedDream.__init__

    def spy(self, *args, **kw):
        original(self, *args, **kw)
        built.append(self)

    monkeypatch.setattr(BatchedDream, "__init__", spy)
    out = tmp_path / "pngs"
    assert main(["figures", "--run-dir", str(run), "--only", "dream_strip", "--out", str(out),
                 "--size", str(SIZE), "--steps", "20", "--every", "5", "--device", "cpu"]) == 0
    assert read_png(out / "dream_strip.png").shape[1:] == (figures.LABEL_WIDTH + 5 * SIZE, 3)
    dream, open_loop = built
    assert (dream.action_map, dream.reward) == ("thirds", "survival")
    assert (dream.temperature, dream.dropout, dream.done_threshold) == (0.7, 0.1, 0.4)
    assert (open_loop.action_map, open_loop.done_threshold) == ("thirds", 1.0)
    _, returns, dones = figures.dream_with_controller(dream, c, torch.zeros(1, Z), 20, seed=0)
    assert returns == [float(t) for t in range(21)] and not any(dones)
