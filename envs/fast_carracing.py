# mypy: disable-error-code="assignment,attr-defined,arg-type,union-attr"
# (gymnasium's CarRacing declares its pygame surfaces, clock and car as None; this subclass
# draws with them the way the parent does.)
"""CarRacing-v3 with the same physics, reward and byte-identical observations, rendered faster.

gymnasium's ``CarRacing._render_road`` transforms ~800 polygons (grass squares and road
tiles) one vertex at a time in Python, although only a few dozen are visible, and
``_render`` builds a new pygame Font every frame. ``FastCarRacing`` draws the same pixels
with the same pygame calls, minus the work that cannot change a pixel of the observation:

- all polygons of a track are stacked in arrays at the first frame of an episode and
  transformed per frame with numpy, with the exact float64 operations of the original
  (``Vector2.rotate_rad`` then ``* zoom + translation``; the cosine and sine are read back
  from ``Vector2(1, 0).rotate_rad(angle)``, so pygame's angle reduction and its exact
  multiples of 90 degrees carry over). The original's visibility test is applied to
  them, vectorised, and the survivors reach ``gfxdraw`` with the same coordinates,
  colours and order;
- of those, polygons whose bounding box lies wholly beside the window, or wholly in the
  rows the dashboard bar later paints over, are skipped: they paint no visible pixel;
- when the playfield polygon covers the window with a margin, it is drawn with a plain
  fill instead of scanning ~10^4 off-screen rows;
- one Font is kept instead of one made per frame; surfaces are reused;
- for ``state_pixels`` (the observation) the 1000x800 frame is not flipped as a whole:
  smoothscale shrinks rows, then columns, so the rows of the world part and of the
  dashboard are shrunk separately and stacked (see ``_state_pixels_in_parts``).

Every shortcut has a condition, checked each frame, under which it is exact; otherwise the
original drawing is used. Physics (Box2D, ``Car.step``) and reward code are inherited
untouched, and so is the car drawing (``Car.draw``). After a ``state_pixels`` frame,
``self.surf`` holds the unflipped world canvas rather than the finished frame.
"""

from __future__ import annotations

import numpy as np
import pygame
from gymnasium.envs.box2d.car_racing import (
    GRASS_DIM,
    MAX_SHAPE_DIM,
    PLAYFIELD,
    SCALE,
    STATE_H,
    STATE_W,
    VIDEO_H,
    VIDEO_W,
    WINDOW_H,
    WINDOW_W,
    ZOOM,
    CarRacing,
)
from pygame import gfxdraw

# pygame-ce (gymnasium >= 1.3 installs it) or classic pygame (older gymnasium, or both
# installed): they differ in what a Font does after pygame.quit() (see _score_text).
_PYGAME_CE = bool(getattr(pygame, "IS_CE", False))


def _grass_polygons() -> np.ndarray:
    """The 400 grass squares of ``CarRacing._render_road``, same floats, shape (400, 4, 2)."""
    grass = []
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            grass.append([
                (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + 0),
                (GRASS_DIM * x + 0, GRASS_DIM * y + 0),
                (GRASS_DIM * x + 0, GRASS_DIM * y + GRASS_DIM),
                (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM),
            ])
    return np.array(grass, dtype=np.float64)


_FIELD_X = np.array([PLAYFIELD, PLAYFIELD, -PLAYFIELD, -PLAYFIELD])
_FIELD_Y = np.array([PLAYFIELD, -PLAYFIELD, -PLAYFIELD, PLAYFIELD])
_GRASS = _grass_polygons()
_CLIP_LO = -MAX_SHAPE_DIM
_CLIP_HI_X = WINDOW_W + MAX_SHAPE_DIM
_CLIP_HI_Y = WINDOW_H + MAX_SHAPE_DIM
_OFF_MARGIN = 4  # pixels: truncation to int (<1), antialiased outline (1), fill rounding (1)
_BAR_TOP = round(WINDOW_H - 5 * WINDOW_H / 40.0)  # first row of the dashboard's black bar
_HIDDEN_ROWS = WINDOW_H - _BAR_TOP  # the canvas' top rows: flipped, the bar covers them
_BAR_VALUE_LIMIT = 3.9  # vertical indicator values below this stay 2 pixels inside the bar
_COVER_MARGIN = 8  # pixels between the window and the background's edges for a plain fill


def _to_screen(x: np.ndarray, y: np.ndarray, cos: float, sin: float, zoom: float,
               translation: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Screen coordinates of world points ``(x, y)``, rounded exactly as the original.

    ``Vector2.rotate_rad`` computes ``(cos*x - sin*y, sin*x + cos*y)`` in double precision
    (no fused multiply-add), then the original computes ``r * zoom + translation``.
    """
    sx = (cos * x - sin * y) * zoom + translation[0]
    sy = (sin * x + cos * y) * zoom + translation[1]
    return sx, sy


def _covers_window(poly: list[tuple[float, float]]) -> bool:
    """Whether gfxdraw's aapolygon + filled_polygon of the convex ``poly`` paint exactly
    every pixel of the window with the fill colour and nothing else.

    gfxdraw truncates coordinates to Sint16; its scanline fill works in 16.16 fixed point
    in C ints. True only when the integer polygon holds the window grown by
    ``_COVER_MARGIN`` pixels (the antialiased outline, within a pixel of the edges, is
    then clipped away and every row is filled edge to edge) and no coordinate or edge
    length can wrap or overflow; otherwise the caller draws as the original.
    """
    xs = [int(x) for x, _ in poly]
    ys = [int(y) for _, y in poly]
    n = len(poly)
    for i in range(n):
        if not (-32768 <= xs[i] <= 32767 and -32768 <= ys[i] <= 32767):
            return False
        if abs(xs[i] - xs[i - 1]) >= 32767 or abs(ys[i] - ys[i - 1]) >= 32767:
            return False
    m = _COVER_MARGIN
    corners = [(-m, -m), (WINDOW_W - 1 + m, -m), (WINDOW_W - 1 + m, WINDOW_H - 1 + m),
               (-m, WINDOW_H - 1 + m)]
    signs = set()
    for i in range(n):
        ax, ay, bx, by = xs[i - 1], ys[i - 1], xs[i], ys[i]
        for cx, cy in corners:
            cross = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            if cross == 0:
                return False
            signs.add(cross > 0)
    return len(signs) == 1


def _rotation(angle: float) -> tuple[float, float]:
    """(cos, sin) exactly as ``Vector2.rotate_rad(angle)`` uses them."""
    cos, sin = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
    return cos, sin


class FastCarRacing(CarRacing):
    """``CarRacing`` (v3) whose frames are byte-identical to the original's, drawn faster."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._road_src: list | None = None  # the road_poly list the arrays were built from
        self._n_road = 0
        self._poly_x = self._poly_y = np.zeros((4, 0))
        self._font: pygame.font.Font | None = None
        self._canvas: pygame.Surface | None = None  # reused instead of a new Surface per frame
        self._canvas_key: pygame.Surface | None = None

    # ----------------------------------------------------------------------------- road
    def _polygon_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y, each (4, P), of grass then road polygons in drawing order; rebuilt when
        ``reset`` has made a new track."""
        if self._road_src is not self.road_poly or self._n_road != len(self.road_poly):
            road = np.array([poly for poly, _ in self.road_poly], dtype=np.float64)
            polys = np.concatenate([_GRASS, road.reshape(-1, 4, 2)])  # (P, 4, 2)
            self._poly_x = np.ascontiguousarray(polys[:, :, 0].T)
            self._poly_y = np.ascontiguousarray(polys[:, :, 1].T)
            self._road_src = self.road_poly
            self._n_road = len(self.road_poly)
        return self._poly_x, self._poly_y

    def _render_road(self, zoom, translation, angle):
        cos, sin = _rotation(angle)
        surf = self.surf

        # background, never clipped
        fx, fy = _to_screen(_FIELD_X, _FIELD_Y, cos, sin, zoom, translation)
        field = list(zip(fx.tolist(), fy.tolist()))
        if _covers_window(field):
            # Same pixels as the two calls below, without scanning ~10^4 off-screen rows.
            self._scratch.fill((0, 0, 0))
            gfxdraw.pixel(self._scratch, 0, 0, self.bg_color)  # gfxdraw's colour conversion
            surf.fill(self._scratch.get_at((0, 0)))
        else:
            surf.fill((0, 0, 0))
            gfxdraw.aapolygon(surf, field, self.bg_color)
            gfxdraw.filled_polygon(surf, field, self.bg_color)

        # Grass and road. The original draws a polygon when any vertex is inside the window
        # grown by MAX_SHAPE_DIM; of those, skip the ones whose bounding box lies wholly
        # beside the window, or wholly in the rows the dashboard bar paints over later: they
        # paint no pixel that is seen (gfxdraw clips every scanline and rejects every
        # outline segment lying beyond one edge of the surface).
        sx, sy = _to_screen(*self._polygon_arrays(), cos, sin, zoom, translation)
        near = np.logical_or.reduce(
            (sx >= _CLIP_LO) & (sx <= _CLIP_HI_X) & (sy >= _CLIP_LO) & (sy <= _CLIP_HI_Y))
        beside = ((np.maximum.reduce(sx) < -_OFF_MARGIN)
                  | (np.minimum.reduce(sx) > WINDOW_W + _OFF_MARGIN)
                  | (np.maximum.reduce(sy) < _HIDDEN_ROWS - _OFF_MARGIN)
                  | (np.minimum.reduce(sy) > WINDOW_H + _OFF_MARGIN))
        drawn = np.flatnonzero(near & ~beside)
        n_grass = len(_GRASS)
        grass_color = self.grass_color
        road_poly = self.road_poly
        xs = sx[:, drawn].T.tolist()
        ys = sy[:, drawn].T.tolist()
        for i, px, py in zip(drawn.tolist(), xs, ys):
            poly = list(zip(px, py))
            if i < n_grass:
                color = grass_color
            else:  # read each frame: a tile's colour changes when the car first touches it
                color = [int(c) for c in road_poly[i - n_grass][1]]
            gfxdraw.aapolygon(surf, poly, color)
            gfxdraw.filled_polygon(surf, poly, color)

    # ----------------------------------------------------------------------------- text
    def _score_text(self, text: str) -> pygame.Surface:
        """``Font.render`` of the original with one Font kept, not one made per frame.

        pygame-ce raises ``pygame.error`` on a Font whose module was quit (another env's
        ``pygame.quit()``), and a new Font is made; classic pygame crashes the process
        instead, so with classic pygame a Font is made per frame, as the original does."""
        if not _PYGAME_CE:
            return pygame.font.Font(pygame.font.get_default_font(), 42).render(
                text, True, (255, 255, 255), (0, 0, 0))
        try:
            if self._font is None:
                raise pygame.error
            return self._font.render(text, True, (255, 255, 255), (0, 0, 0))
        except pygame.error:  # no Font yet, or the font module was quit since it was made
            self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
            return self._font.render(text, True, (255, 255, 255), (0, 0, 0))

    # --------------------------------------------------------------------------- render
    def _surfaces(self) -> pygame.Surface:
        """The world canvas, and the other surfaces of ``_render``, reused across frames.
        Remade when the display is opened or closed: a new Surface takes its format."""
        key = pygame.display.get_surface()
        if self._canvas is None or self._canvas_key is not key:
            canvas = pygame.Surface((WINDOW_W, WINDOW_H))
            # the flipped frame; for state_pixels in parts, only its dashboard rows
            self._frame = pygame.Surface((WINDOW_W, WINDOW_H), 0, canvas)
            # rows shrunk to STATE_W wide: of the world, of the dashboard, both stacked
            self._world_rows = pygame.Surface((STATE_W, _BAR_TOP), 0, canvas)
            self._bar_rows = pygame.Surface((STATE_W, WINDOW_H - _BAR_TOP), 0, canvas)
            self._frame_rows = pygame.Surface((STATE_W, WINDOW_H), 0, canvas)
            self._state = pygame.Surface((STATE_W, STATE_H), 0, canvas)
            self._scratch = pygame.Surface((1, 1), 0, canvas)
            self._canvas, self._canvas_key = canvas, key
        return self._canvas

    def _render(self, mode: str):
        assert mode in self.metadata["render_modes"]

        pygame.font.init()
        if self.screen is None and mode == "human":
            pygame.display.init()
            self.screen = pygame.display.set_mode((WINDOW_W, WINDOW_H))
        if self.clock is None:
            self.clock = pygame.time.Clock()

        if "t" not in self.__dict__:
            return  # reset() not called yet

        canvas = self._surfaces()
        self.surf = canvas  # _render_road paints every pixel first

        assert self.car is not None
        # computing transformations (same expressions as the original)
        angle = -self.car.hull.angle
        zoom = 0.1 * SCALE * max(1 - self.t, 0) + ZOOM * SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (WINDOW_W / 2 + trans[0], WINDOW_H / 4 + trans[1])

        self._render_road(zoom, trans, angle)
        self.car.draw(canvas, zoom, trans, angle,
                      mode not in ["state_pixels_list", "state_pixels"])

        text = self._score_text(f"{self.reward:04.0f}")
        text_rect = text.get_rect()
        text_rect.center = (60, WINDOW_H - WINDOW_H * 2.5 / 40.0)

        if mode == "state_pixels" and self._dashboard_apart(text_rect):
            return self._state_pixels_in_parts(canvas, text, text_rect)

        # pygame.transform.flip(canvas, False, True), into a reused surface
        if canvas.get_bytesize() == 4:
            src = pygame.surfarray.pixels2d(canvas)
            dst = pygame.surfarray.pixels2d(self._frame)
            dst[...] = src[:, ::-1]
            del src, dst  # unlock the surfaces
            self.surf = self._frame
        else:
            self.surf = pygame.transform.flip(canvas, False, True)

        self._render_indicators(WINDOW_W, WINDOW_H)
        self.surf.blit(text, text_rect)

        if mode == "human":
            pygame.event.pump()
            self.clock.tick(self.metadata["render_fps"])
            assert self.screen is not None
            self.screen.fill(0)
            self.screen.blit(self.surf, (0, 0))
            pygame.display.flip()
        elif mode == "rgb_array":
            return self._create_image_array(self.surf, (VIDEO_W, VIDEO_H))
        elif mode == "state_pixels":
            return self._create_image_array(self.surf, (STATE_W, STATE_H))
        else:
            return self.isopen

    def _dashboard_apart(self, text_rect: pygame.Rect) -> bool:
        """Whether the dashboard (indicators and score) stays inside its black bar, rows
        ``_BAR_TOP`` and below of the flipped frame, which it then entirely repaints. Only
        the vertical indicators (speed, wheel speeds) can grow above the bar: their top is
        at ``H - h * (1 + value)``, above the bar once value > 4."""
        if self._canvas.get_bytesize() != 4 or text_rect.top < _BAR_TOP:
            return False
        velocity = self.car.hull.linearVelocity
        speed = np.sqrt(np.square(velocity[0]) + np.square(velocity[1]))
        values = [0.02 * speed] + [0.01 * wheel.omega for wheel in self.car.wheels]
        return bool(max(values) < _BAR_VALUE_LIMIT)

    def _state_pixels_in_parts(self, canvas: pygame.Surface, text: pygame.Surface,
                               text_rect: pygame.Rect) -> np.ndarray:
        """The state_pixels observation without building the flipped 1000x800 frame.

        smoothscale shrinks rows first (each output row depends on its input row only),
        then columns. The flipped frame is the canvas upside down above the dashboard bar,
        which covers its bottom ``WINDOW_H - _BAR_TOP`` rows. So: shrink the rows of the
        visible part of the canvas and of the bar separately, stack them (the canvas part
        upside down) and let smoothscale finish with the columns.
        """
        self.surf = self._frame
        self._render_indicators(WINDOW_W, WINDOW_H)  # paints the whole bar first
        self._frame.blit(text, text_rect)
        self.surf = canvas
        bar_rows = WINDOW_H - _BAR_TOP
        pygame.transform.smoothscale(canvas.subsurface((0, bar_rows, WINDOW_W, _BAR_TOP)),
                                     (STATE_W, _BAR_TOP), self._world_rows)
        pygame.transform.smoothscale(self._frame.subsurface((0, _BAR_TOP, WINDOW_W, bar_rows)),
                                     (STATE_W, bar_rows), self._bar_rows)
        frame = pygame.surfarray.pixels2d(self._frame_rows)
        frame[:, :_BAR_TOP] = pygame.surfarray.pixels2d(self._world_rows)[:, ::-1]
        frame[:, _BAR_TOP:] = pygame.surfarray.pixels2d(self._bar_rows)
        del frame  # unlock
        pygame.transform.smoothscale(self._frame_rows, (STATE_W, STATE_H), self._state)
        # the original's transpose(pixels3d(...)), as a C-contiguous (H, W, 3) copy
        rgb = pygame.image.tobytes(self._state, "RGB")
        return np.frombuffer(rgb, dtype=np.uint8).reshape(STATE_H, STATE_W, 3).copy()
