"""``--cluster.backend ray`` on a real Ray cluster: two nodes on this machine (``ray start
--head`` and ``ray start --address``, one CPU each), the CLI connecting to it by address. The
same shards, fitness values and results.json as ``local``; a worker process killed mid-task and
a driver killed mid-run change nothing; clear errors for a missing Ray or an unreachable
cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from worldmodels import cli
from worldmodels.checkpoint import load_checkpoint
from worldmodels.data import read_manifest
from worldmodels.testing import save_controller, tiny_world_models

# Every Ray process of the tests gets these. Ray's dashboard asks the cloud metadata address
# (169.254.169.254) which cloud it runs on unless ~/ray_bootstrap_config.yaml exists: HOME is
# a folder that holds one, so that no traffic leaves this machine.
_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "SDL_VIDEODRIVER": "dummy"}
_IP = "127.0.0.2"  # a loopback address that Ray does not swap for the machine's own


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _disconnect() -> None:
    """End this process's own Ray connection, if a test made one."""
    if "ray" in sys.modules and sys.modules["ray"] is not None:
        sys.modules["ray"].shutdown()


def _wait(condition: Callable[[], object], what: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Cluster:
    address: str          # HOST:PORT of the head
    groups: list[int]     # the process groups of its nodes' `ray start`, raylet and daemons


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster of one CPU per node; stopped (every process of both nodes
    killed) when the module's tests end, however they end."""
    pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="wmray"))  # short: Ray's socket paths must fit 107 bytes
    (root / "ray_bootstrap_config.yaml").write_text("{}\n")
    env = {**os.environ, **_ENV, "HOME": str(root)}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"{_IP}:{port}"
    common = ["--num-cpus", "1", "--node-ip-address", _IP, "--disable-usage-stats", "--block"]
    nodes: list[tuple[subprocess.Popen, Path]] = []

    def start(*args: str) -> None:
        log = root / f"node{len(nodes)}.log"
        with open(log, "w") as f:
            # `ray start` of this Python's Ray, whatever PATH holds
            p = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", *args,
                                  *common, "--dashboard-agent-listen-port", str(_free_port())],
                                 env=env, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        nodes.append((p, log))
        _wait(lambda: "Ray runtime started" in log.read_text() or p.poll() is not None,
              f"ray start {' '.join(args)}")
        if p.poll() is not None:
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")

    try:
        start("--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(root),
              "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port()))
        start("--address", address)
        yield Cluster(address, [p.pid for p, _ in nodes])
    finally:
        _disconnect()
        for p, _ in reversed(nodes):
            os.killpg(p.pid, signal.SIGKILL)  # ray start --block leads its node's process group
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


def _start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """``worldmodels ARGS`` as a separate driver process (that a test may kill); its output
    goes to ``cwd/driver.log``."""
    with open(cwd / "driver.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "worldmodels", *args], cwd=cwd,
                                env={**os.environ, **_ENV}, stdout=log, stderr=subprocess.STDOUT)


def _running(title: str, cluster: Cluster) -> int | None:
    """The pid of a worker of ``cluster`` whose title starts with ``title`` (Ray titles a
    worker ``ray::FUNCTION`` or ``ray::CLASS.METHOD`` while it runs that task). Workers have
    their own process group; their parent, a node's raylet, is in the node's."""
    for proc in Path("/proc").iterdir():
        try:
            if not (proc.name.isdigit()
                    and (proc / "cmdline").read_bytes().startswith(title.encode())):
                continue
            parent = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            if os.getpgid(parent) in cluster.groups:
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _kill_mid_task(title: str, cluster: Cluster, driver: subprocess.Popen, cwd: Path) -> None:
    """SIGKILL a worker process of ``cluster`` while it runs the task titled ``title``."""
    pid = None

    def found() -> bool:
        nonlocal pid
        pid = _running(title, cluster)
        return pid is not None or driver.poll() is not None

    _wait(found, f"a process running {title}")
    assert pid is not None, f"no {title} ran:\n{(cwd / 'driver.log').read_text()[-3000:]}"
    os.kill(pid, signal.SIGKILL)


def _kill_driver_when(condition: Callable[[], object], driver: subprocess.Popen,
                      cwd: Path) -> None:
    _wait(lambda: condition() or driver.poll() is not None, "the run to make progress")
    assert driver.poll() is None, ("the driver ended before it could be killed:\n"
                                   + (cwd / "driver.log").read_text()[-3000:])
    driver.kill()
    driver.wait()


def _shard_bytes(folder: Path) -> dict[str, dict[str, bytes]]:
    """Each shard's arrays as stored (the .npy bytes inside the zip), by file name."""
    out = {}
    for path in sorted(folder.glob("ep_*.npz")):
        with zipfile.ZipFile(path) as z:
            out[path.name] = {name: z.read(name) for name in z.namelist()}
    return out


def _entries(folder: Path) -> list[dict]:
    """Manifest entries in index order, without the file's sha256 (the zip format stores the
    time a shard was written)."""
    return sorted(({k: v for k, v in e.items() if k != "sha256"} for e in read_manifest(folder)),
                  key=lambda e: e["index"])


# --- errors ---------------------------------------------------------------------------------

def _collect(tmp_path: Path, *options: str) -> list[str]:
    return ["collect", "--preset", "debug", "--out", str(tmp_path / "rollouts"), "--no-progress",
            *options]


def test_without_ray_backend_ray_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    _disconnect()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert cli.main(_collect(tmp_path, "--cluster.backend", "ray")) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install -e ".[ray]"' in err and "\n" not in err
    assert not (tmp_path / "rollouts").exists()  # refused before anything was written

    assert cli.main(_collect(tmp_path, "--cluster.backend", "dask")) == 2
    assert "invalid choice: 'dask' (choose from 'local', 'ray')" in capsys.readouterr().err


def test_an_unreachable_cluster_is_an_error_naming_its_address(tmp_path, capsys):
    pytest.importorskip("ray")
    _disconnect()  # connect() tries an address only in a process not yet connected
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    assert cli.main(_collect(tmp_path, "--cluster.backend", "ray",
                             "--cluster.ray-address", address)) == 2
    err = capsys.readouterr().err.strip()
    assert address in err and "ray start --head" in err and "\n" not in err
    assert not (tmp_path / "rollouts").exists()

    assert cli.main(_collect(tmp_path, "--cluster.backend", "ray",
                             "--cluster.ray-address", "nonsense")) == 2
    assert "'nonsense' is not HOST:PORT" in capsys.readouterr().err


# --- on the cluster ---------------------------------------------------------------------------

@pytest.mark.slow
def test_collect_equals_local_through_a_killed_worker_and_a_killed_driver(cluster, tmp_path,
                                                                          monkeypatch):
    opts = ["collect", "--preset", "debug", "--collect.episodes", "8", "--env.max-steps", "100",
            "--no-progress"]
    assert cli.main([*opts, "--collect.workers", "1", "--out", str(tmp_path / "local")]) == 0

    ray_opts = [*opts, "--collect.workers", "2", "--out", "ray", "--cluster.backend", "ray",
                "--cluster.ray-address", cluster.address]   # a relative --out: absolute on workers
    driver = _start_cli(ray_opts, cwd=tmp_path)
    _kill_mid_task("ray::_ray_worker", cluster, driver, tmp_path)        # a worker, mid-episode
    _kill_driver_when(lambda: len(read_manifest(tmp_path / "ray")) >= 2, driver, tmp_path)
    assert not (tmp_path / "ray" / "done.json").exists()

    monkeypatch.chdir(tmp_path)
    assert cli.main(ray_opts) == 0                              # the rerun resumes
    assert _shard_bytes(tmp_path / "ray") == _shard_bytes(tmp_path / "local")
    assert len(_shard_bytes(tmp_path / "local")) == 8
    assert _entries(tmp_path / "ray") == _entries(tmp_path / "local")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    vae, rnn = tiny_world_models(folder)
    return vae, rnn, save_controller(folder / "controller.pt", vae, rnn)


def _es_result(out: Path) -> dict:
    """What a finished ES run decided: every generation's fitness values (float64), the
    evaluations, the final CMA mean and the best C."""
    latest = load_checkpoint(out / "controller.pt", kind="controller")
    result = {"fitness": latest["extra"]["es"]["fitness"].tolist(),
              "evals": latest["extra"]["evals"],
              "mean": {k: v.tolist() for k, v in latest["model"].items()}}
    if (out / "controller_best.pt").exists():
        best = load_checkpoint(out / "controller_best.pt", kind="controller")
        result["best"] = {k: v.tolist() for k, v in best["model"].items()}
    done = json.loads((out / "done.json").read_text())
    result["done"] = {k: v for k, v in done.items() if k not in ("controller", "controller_best")}
    return result


@pytest.mark.slow
def test_real_es_equals_local_through_a_killed_actor_and_a_killed_driver(cluster, models,
                                                                          tmp_path):
    vae, rnn, _ = models
    opts = ["train-controller", "--vae", str(vae), "--rnn", str(rnn), "--preset", "debug",
            "--controller.mode", "real", "--controller.popsize", "6",
            "--controller.rollouts-per-candidate", "1", "--controller.generations", "4",
            "--controller.real-max-steps", "100", "--env.max-steps", "120",
            "--controller.eval-every", "2", "--controller.eval-episodes", "2", "--device", "cpu",
            "--no-progress"]
    assert cli.main([*opts, "--controller.workers", "1", "--out", str(tmp_path / "local")]) == 0

    out = tmp_path / "ray"
    ray_opts = [*opts, "--controller.workers", "2", "--out", str(out), "--cluster.backend", "ray",
                "--cluster.ray-address", cluster.address]
    driver = _start_cli(ray_opts, cwd=tmp_path)
    _kill_mid_task("ray::RayWorker.episode", cluster, driver, tmp_path)  # an actor, mid-generation
    _kill_driver_when(lambda: (out / "controller.pt").exists(), driver, tmp_path)
    assert not (out / "done.json").exists()

    assert cli.main(ray_opts) == 0                     # resumes from the last generation
    assert _es_result(out) == _es_result(tmp_path / "local")
    assert len(_es_result(out)["fitness"]) == 4 and len(_es_result(out)["evals"]) == 2


@pytest.mark.slow
def test_dream_es_and_evaluate_equal_local(cluster, models, tmp_path):
    vae, rnn, controller = models
    # 7 dream rows (6 candidates and the CMA mean): blocks of 4 and 3 on the two actors.
    opts = ["train-controller", "--vae", str(vae), "--rnn", str(rnn), "--preset", "debug",
            "--controller.mode", "dream", "--controller.popsize", "6",
            "--controller.rollouts-per-candidate", "3", "--controller.generations", "2",
            "--controller.dream-max-steps", "40", "--controller.dream-dropout", "0.1",
            "--env.max-steps", "40", "--controller.eval-every", "2",
            "--controller.eval-episodes", "2", "--device", "cpu", "--no-progress"]
    ray = ["--cluster.backend", "ray", "--cluster.ray-address", cluster.address]
    assert cli.main([*opts, "--controller.workers", "1", "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*opts, "--out", str(tmp_path / "ray"), "--controller.workers", "2",
                     *ray]) == 0
    assert _es_result(tmp_path / "ray") == _es_result(tmp_path / "local")

    ev = ["evaluate", "--controller", str(controller), "--eval.episodes", "3",
          "--env.max-steps", "50", "--device", "cpu", "--no-progress"]
    assert cli.main([*ev, "--eval.workers", "1", "--out", str(tmp_path / "local.json")]) == 0
    assert cli.main([*ev, "--out", str(tmp_path / "ray.json"), "--eval.workers", "2", *ray]) == 0
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
