"""Steps/s of CarRacing-v3 vs worldmodels/CarRacingFast-v3 on one core, and where time goes.

    taskset -c 0 python scripts/profile_carracing.py --steps 1000 --seeds 0 1
    python scripts/profile_carracing.py --profile fast   # cProfile of the fast env

Both envs replay the same seeded actions (render_mode=None, i.e. state_pixels
observations), full episodes from reset. They run in alternating chunks so that load from
other processes hits both alike; each chunk is timed in CPU time of this process
(``time.process_time``), and the figure per env is its median chunk speed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import worldmodels.envs  # noqa: E402,F401  (registers worldmodels/CarRacingFast-v3)

from worldmodels.testing import forward_biased_actions  # noqa: E402

ENV_IDS = {"official": "CarRacing-v3", "fast": "worldmodels/CarRacingFast-v3"}




def benchmark(seeds: list[int], steps: int, chunk: int) -> dict[str, float]:
    envs = {name: gym.make(env_id) for name, env_id in ENV_IDS.items()}
    speeds: dict[str, list[float]] = {name: [] for name in envs}
    for seed in seeds:
        actions = forward_biased_actions(seed, steps)
        for env in envs.values():
            env.reset(seed=seed)
        for start in range(0, steps, chunk):
            for name, env in envs.items():
                t0 = time.process_time()
                for action in actions[start:start + chunk]:
                    env.step(action)
                speeds[name].append(len(actions[start:start + chunk]) / (time.process_time() - t0))
    return {name: statistics.median(v) for name, v in speeds.items()}


def profile(name: str, steps: int) -> None:
    env = gym.make(ENV_IDS[name])
    env.reset(seed=0)
    actions = forward_biased_actions(0, steps)
    prof = cProfile.Profile()
    prof.enable()
    for action in actions:
        env.step(action)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--chunk", type=int, default=50, help="steps per timed chunk")
    parser.add_argument("--profile", choices=sorted(ENV_IDS), help="cProfile this env instead")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.steps)
        return
    speeds = benchmark(args.seeds, args.steps, args.chunk)
    for name, sps in speeds.items():
        print(f"{ENV_IDS[name]:32s} {sps:8.1f} steps/s")
    print(f"speed-up fast/official: {speeds['fast'] / speeds['official']:.2f}x")


if __name__ == "__main__":
    main()
