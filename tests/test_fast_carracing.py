"""worldmodels/CarRacingFast-v3 is CarRacing-v3, byte for byte, only faster.

The fast env and the official one step in lockstep on the same seeds and actions; every
observation, reward, terminated, truncated and info must be equal. The shortcuts the fast
renderer takes rest on properties of pygame, which are checked directly as well.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402
import worldmodels.envs  # noqa: E402,F401  (registers worldmodels/CarRacingFast-v3)
from gymnasium.envs.box2d.car_racing import CarRacing  # noqa: E402
from pygame import gfxdraw  # noqa: E402
from worldmodels.envs import fast_carracing  # noqa: E402
from worldmodels.envs.fast_carracing import FastCarRacing  # noqa: E402

from worldmodels.testing import forward_biased_actions  # noqa: E402

FAST_ID = "worldmodels/CarRacingFast-v3"
OFFICIAL_ID = "CarRacing-v3"




def assert_same_reset(official, fast, **kwargs) -> None:
    obs_o, info_o = official.reset(**kwargs)
    obs_f, info_f = fast.reset(**kwargs)
    assert obs_f.dtype == obs_o.dtype == np.uint8 and obs_f.shape == obs_o.shape
    assert np.array_equal(obs_f, obs_o)
    assert info_f == info_o


def assert_same_steps(official, fast, actions, render_every: int = 0):
    """Step both envs with ``actions`` until the episode ends (or the actions do); returns
    the number of steps and the last (reward, terminated, truncated, info)."""
    for t, action in enumerate(actions):
        obs_o, *last_o = official.step(action)
        obs_f, *last_f = fast.step(action)
        assert obs_f.dtype == obs_o.dtype and np.array_equal(obs_f, obs_o), \
            f"observation differs at step {t}"
        assert last_f == last_o, f"reward, terminated, truncated or info differ at step {t}"
        if render_every and t % render_every == 0:
            frame_o, frame_f = official.render(), fast.render()
            assert frame_f.shape == frame_o.shape == (400, 600, 3)
            assert np.array_equal(frame_f, frame_o), f"rgb_array frame differs at step {t}"
        if last_o[1] or last_o[2]:
            break
    return t + 1, tuple(last_o)


@pytest.fixture
def env_pair(request):
    kwargs = getattr(request, "param", {})
    official = gym.make(OFFICIAL_ID, **kwargs)
    fast = gym.make(FAST_ID, **kwargs)
    yield official, fast
    official.close()
    fast.close()


def test_registered_as_a_carracing_subclass():
    env = gym.make(FAST_ID)
    assert isinstance(env.unwrapped, FastCarRacing)
    assert isinstance(env.unwrapped, CarRacing)
    assert env.spec.max_episode_steps == 1000
    assert env.observation_space == gym.make(OFFICIAL_ID).observation_space
    env.close()


@pytest.mark.slow
def test_full_episodes_identical_across_resets(env_pair):
    """Two seeded 1000-step episodes (ending truncated) and an unseeded one, on the same
    two env objects: per-track caches must follow each new track."""
    official, fast = env_pair
    for seed in (0, 1):
        assert_same_reset(official, fast, seed=seed)
        steps, (_, terminated, truncated, _) = assert_same_steps(
            official, fast, forward_biased_actions(seed, 1000))
        assert (steps, terminated, truncated) == (1000, False, True)  # the time limit
    assert_same_reset(official, fast)  # the env's own RNG, continued
    assert_same_steps(official, fast, forward_biased_actions(2, 200))


def test_leaving_the_playfield_identical(env_pair):
    """Full gas straight ahead on this track leaves the playfield: -100 and terminated."""
    official, fast = env_pair
    assert_same_reset(official, fast, seed=6)
    actions = np.tile(np.float32([0.0, 1.0, 0.0]), (1000, 1))
    steps, last = assert_same_steps(official, fast, actions)
    assert steps < 1000 and last == (-100, True, False, {"lap_finished": False})


@pytest.mark.parametrize("env_pair", [{"render_mode": "rgb_array"}], indirect=True)
def test_rgb_array_frames_identical(env_pair):
    """rgb_array frames (600x400, skid marks drawn) match, through the zoom-in and after."""
    official, fast = env_pair
    assert_same_reset(official, fast, seed=3)
    assert_same_steps(official, fast, forward_biased_actions(3, 150), render_every=10)


def test_human_render_mode_runs():
    """render_mode="human" (a dummy SDL display here) draws and gives the same states."""
    official, fast = gym.make(OFFICIAL_ID), gym.make(FAST_ID, render_mode="human")
    try:
        assert_same_reset(official, fast, seed=8)
        assert_same_steps(official, fast, forward_biased_actions(8, 30))
        window = pygame.surfarray.array3d(pygame.display.get_surface())
        assert window.shape == (1000, 800, 3) and window.any()
    finally:
        fast.close()
        official.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_pair", [{"domain_randomize": True}, {"continuous": False}], indirect=True)
def test_other_constructor_options_identical(env_pair):
    """Random float colours (domain_randomize) and discrete actions."""
    official, fast = env_pair
    assert_same_reset(official, fast, seed=4)
    if official.unwrapped.continuous:
        actions = forward_biased_actions(4, 150)
    else:
        actions = np.random.default_rng(4).choice(5, size=150, p=[0.1, 0.2, 0.2, 0.4, 0.1])
    assert_same_steps(official, fast, actions)
    assert_same_reset(official, fast, seed=5, options={"randomize": False})
    assert_same_steps(official, fast, actions[:60])


def test_fallback_drawing_paths_identical(env_pair, monkeypatch):
    """The paths taken when a shortcut does not apply (the background polygon not covering
    the window, the dashboard leaving its bar) draw the same frames too."""
    monkeypatch.setattr(fast_carracing, "_covers_window", lambda poly: False)
    monkeypatch.setattr(fast_carracing, "_BAR_VALUE_LIMIT", -math.inf)
    official, fast = env_pair
    assert_same_reset(official, fast, seed=7)
    assert_same_steps(official, fast, forward_biased_actions(7, 120))


def test_another_envs_pygame_quit_between_frames_is_survived(env_pair, monkeypatch):
    """Another env calling pygame.quit() between two frames (its close()) invalidates the
    kept Font: pygame-ce raises and a new Font is made; under classic pygame, which would
    crash, a Font is made per frame. Both give the official frames."""
    official, fast = env_pair
    for ce in (True, False):
        monkeypatch.setattr(fast_carracing, "_PYGAME_CE", ce)
        assert_same_reset(official, fast, seed=3)
        assert_same_steps(official, fast, forward_biased_actions(3, 5))
        pygame.quit()
        assert_same_steps(official, fast, forward_biased_actions(4, 5))


# --------------------------------------------------------------------- pygame properties
def test_rotation_matches_vector2_rotate_rad():
    """numpy (cos*x - sin*y, sin*x + cos*y) equals Vector2.rotate_rad bit for bit, also at
    the angles pygame special-cases (multiples of 90 degrees)."""
    rng = np.random.default_rng(0)
    angles = list(rng.uniform(-20, 20, 200)) + [0.0, math.pi / 2, -math.pi, 2 * math.pi, 1e-9]
    for angle in angles:
        points = rng.uniform(-400, 400, size=(50, 2))
        expected = np.array([tuple(pygame.math.Vector2(p).rotate_rad(angle))
                             for p in points.tolist()])
        x, y = fast_carracing._to_screen(points[:, 0], points[:, 1],
                                         *fast_carracing._rotation(angle), 1.0, (0.0, 0.0))
        assert np.array_equal(np.stack([x, y], axis=1), expected), angle


def test_smoothscale_shrinks_rows_then_columns():
    """The decomposition ``_state_pixels_in_parts`` relies on."""
    rng = np.random.default_rng(1)
    frame = pygame.Surface((1000, 800))
    pixels = pygame.surfarray.pixels2d(frame)
    pixels[...] = rng.integers(0, 2**24, size=(1000, 800), dtype=np.uint32)
    del pixels
    rows = pygame.transform.smoothscale(frame, (96, 800))
    part = pygame.transform.smoothscale(frame.subsurface((0, 100, 1000, 700)), (96, 700))
    both = pygame.transform.smoothscale(rows, (96, 96))
    direct = pygame.transform.smoothscale(frame, (96, 96))
    assert np.array_equal(pygame.surfarray.array2d(rows)[:, 100:], pygame.surfarray.array2d(part))
    assert np.array_equal(pygame.surfarray.array2d(both), pygame.surfarray.array2d(direct))


def test_dashboard_bar_covers_exactly_its_rows():
    surface = pygame.Surface((1000, 800))
    surface.fill((255, 255, 255))
    w, h = 1000, 800 / 40.0
    pygame.draw.polygon(surface, color=(0, 0, 0),
                        points=[(w, 800), (w, 800 - 5 * h), (0, 800 - 5 * h), (0, 800)])
    pixels = pygame.surfarray.array2d(surface)
    assert (pixels[:, :fast_carracing._BAR_TOP] == 0xFFFFFF).all()
    assert (pixels[:, fast_carracing._BAR_TOP:] == 0).all()


def _draw_original(surface, poly, color):
    gfxdraw.aapolygon(surface, poly, color)
    gfxdraw.filled_polygon(surface, poly, color)


def test_background_fill_equals_gfxdraw_when_covering():
    """Where ``_covers_window`` holds, the plain fill paints what gfxdraw would."""
    rng = np.random.default_rng(2)
    polygon = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64)
    covering = 0
    for _ in range(150):
        angle, half = rng.uniform(-4, 4), rng.uniform(300, 8000)
        x, y = fast_carracing._to_screen(polygon[:, 0] * half, polygon[:, 1] * half,
                                         *fast_carracing._rotation(angle), 1.0,
                                         tuple(rng.uniform(-3000, 4000, 2)))
        poly = list(zip(x.tolist(), y.tolist()))
        if not fast_carracing._covers_window(poly):
            continue
        covering += 1
        drawn = pygame.Surface((1000, 800))
        _draw_original(drawn, poly, (102, 204, 102))
        assert (pygame.surfarray.array2d(drawn) == 0x66CC66).all()
    assert covering > 20


def test_polygons_beside_the_window_paint_nothing():
    """The extra culling of ``_render_road``: a bounding box wholly beyond one edge of the
    window by ``_OFF_MARGIN`` pixels draws no pixel; one wholly in the top
    ``_HIDDEN_ROWS`` rows (covered by the dashboard once flipped) draws none below them."""
    rng = np.random.default_rng(3)
    margin, hidden = fast_carracing._OFF_MARGIN, fast_carracing._HIDDEN_ROWS
    surface = pygame.Surface((1000, 800))
    for _ in range(400):
        w, h = rng.uniform(1, 400, 2)
        side = rng.integers(5)
        x0 = {0: -margin - w - rng.uniform(0, 1), 1: 1000 + margin + rng.uniform(0, 1)}.get(
            side, rng.uniform(-400, 1400))
        y0 = {2: -margin - h - rng.uniform(0, 1), 3: 800 + margin + rng.uniform(0, 1),
              4: hidden - margin - h - rng.uniform(0, 1)}.get(side, rng.uniform(-400, 1200))
        poly = [(x0 + w * rng.uniform(0.5, 1), y0), (x0, y0 + h * rng.uniform(0, 1)),
                (x0 + w * rng.uniform(0, 0.5), y0 + h), (x0 + w, y0 + h * rng.uniform(0, 1))]
        surface.fill((0, 0, 0))
        _draw_original(surface, poly, (255, 255, 255))
        painted = pygame.surfarray.array2d(surface)
        assert not (painted[:, hidden:] if side == 4 else painted).any(), poly
