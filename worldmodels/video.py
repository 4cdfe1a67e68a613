"""Videos and frame panels: writing .mp4/.gif files, side-by-side labelled panels, a live window.

Frames are always RGB uint8, H x W x 3 (a video: T x H x W x 3). Used by ``worldmodels dream``
(dream videos, open-loop comparisons, driving by keyboard) and ``worldmodels play``.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from .utils import atomic_write

VIDEO_EXTENSIONS = (".mp4", ".gif")


class NoDisplayError(RuntimeError):
    """A window was asked for on a machine without a display."""


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray] | np.ndarray,
                fps: int = 30) -> Path:
    """Write T x H x W x 3 uint8 RGB frames to ``path`` (.mp4: mp4v codec, .gif: looping).

    Written to a temporary file and renamed, so an existing video is never left half-written.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"cannot write video {path}: unknown extension {path.suffix!r}; "
                         f"use one of {', '.join(VIDEO_EXTENSIONS)}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty T x H x W x 3 uint8 array, "
                         f"got shape {frames.shape} dtype {frames.dtype}")
    # The temporary name keeps the extension: FFmpeg picks the container from it.
    writer = _write_gif if ext == ".gif" else _write_mp4
    return atomic_write(path, lambda tmp: writer(tmp, frames, fps), suffix=f".tmp{ext}")


def gif_bytes(frames: Sequence[np.ndarray] | np.ndarray, fps: int = 20) -> bytes:
    """T x H x W x 3 uint8 RGB frames as a looping animated GIF."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


def _write_gif(path: Path, frames: np.ndarray, fps: int) -> None:
    path.write_bytes(gif_bytes(frames, fps))


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"mp4v"),
                             float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4 video ({w}x{h}); write a .gif instead")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def read_video_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a .mp4 or .gif as T x H x W x 3 uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if path.suffix.lower() == ".gif":
        with Image.open(path) as im:
            frames = []
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
        return np.stack(frames)
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"cannot read any frame from {path}")
    return np.stack(frames)


def upscale(frame: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a frame to ``size`` (side, or (width, height)) with sharp nearest-neighbour pixels."""
    w, h = (size, size) if isinstance(size, int) else size
    return cv2.resize(np.ascontiguousarray(frame), (w, h), interpolation=cv2.INTER_NEAREST)


def draw_text(frame: np.ndarray, text: str, org: tuple[int, int] = (3, 3),
              scale: float | None = None, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Draw lines of ``text`` (top-left corner at ``org``) on dark boxes; returns a copy."""
    out = np.ascontiguousarray(frame).copy()
    scale = scale if scale is not None else max(0.3, out.shape[0] / 500)
    thickness = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    x, y = org
    for line in text.split("\n"):
        (w, h), baseline = cv2.getTextSize(line, font, scale, thickness)
        cv2.rectangle(out, (x, y), (x + w + 2, y + h + baseline + 2), (0, 0, 0), cv2.FILLED)
        cv2.putText(out, line, (x + 1, y + h + 1), font, scale, color, thickness, cv2.LINE_AA)
        y += h + baseline + 2
    return out


def hstack_panels(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                  size: int | None = None) -> np.ndarray:
    """Panels side by side, each resized to ``size`` x ``size`` (default: the first's height)
    with its label drawn in the top-left corner."""
    if not panels:
        raise ValueError("hstack_panels needs at least one panel")
    size = size or panels[0].shape[0]
    labels = list(labels) if labels is not None else [""] * len(panels)
    if len(labels) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(labels)} labels")
    out = []
    for panel, label in zip(panels, labels):
        panel = panel if panel.shape[:2] == (size, size) else upscale(panel, size)
        out.append(draw_text(panel, label) if label else panel)
    return np.concatenate(out, axis=1)


def diff_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| per pixel, as a frame (black where the two agree)."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.uint8)


def require_display() -> None:
    """Raise :class:`NoDisplayError` on Linux without X11/Wayland and no SDL video driver.

    ``SDL_VIDEODRIVER`` set (e.g. ``dummy`` for tests, or ``offscreen``) counts as a display.
    """
    env = os.environ
    if (sys.platform.startswith("linux") and not env.get("DISPLAY")
            and not env.get("WAYLAND_DISPLAY") and not env.get("SDL_VIDEODRIVER")):
        raise NoDisplayError(
            "no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset): run "
            "under a desktop session, or a virtual display such as "
            "`xvfb-run -s '-screen 0 1024x768x24' worldmodels ...`")


class Window:
    """A pygame window showing RGB frames; :meth:`pressed` reads the keyboard."""

    def __init__(self, title: str, size: tuple[int, int], fps: int = 30):
        require_display()
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.pygame = pygame
        pygame.init()
        try:
            self.screen = pygame.display.set_mode(size)
        except pygame.error as e:
            raise NoDisplayError(f"cannot open a window: {e}") from e
        pygame.display.set_caption(title)
        self.clock = pygame.time.Clock()
        self.fps = fps
        self.size = size
        self.closed = False

    def show(self, frame: np.ndarray) -> None:
        """Display ``frame`` (scaled to the window) and wait for the next tick at ``fps``."""
        frame = frame if frame.shape[1::-1] == self.size else upscale(frame, self.size)
        surface = self.pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self.screen.blit(surface, (0, 0))
        self.pygame.display.flip()
        self.clock.tick(self.fps)

    def poll(self) -> list:
        """Pending events; a window close or Esc sets :attr:`closed`."""
        events = self.pygame.event.get()
        for e in events:
            if e.type == self.pygame.QUIT or (e.type == self.pygame.KEYDOWN
                                              and e.key == self.pygame.K_ESCAPE):
                self.closed = True
        return events

    def pressed(self):
        return self.pygame.key.get_pressed()

    def close(self) -> None:
        self.pygame.display.quit()
        self.closed = True
