"""One logger call fans out to TensorBoard, a CSV file and (optionally) stdout.

The CSV (``scalars.csv``) has one row per (step, tag): a stage that resumes after a kill
replays the steps after its last checkpoint, and when the logger closes, the rows logged
twice keep their last value (the one of the run that went on); a row cut by the kill is
dropped when the file is reopened.

Tags are grouped by stage: ``vae/...``, ``mdnrnn/...``, ``es/...``, ``dream/...``, ``eval/...``,
``time/...``. Videos are written as animated GIFs inside TensorBoard image summaries (the
image dashboard plays them), which avoids the moviepy dependency of ``add_video``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from .video import gif_bytes


class Logger:
    def __init__(self, tb_dir: str | os.PathLike, echo: bool = False):
        self.tb_dir = Path(tb_dir)
        self.tb_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.tb_dir))
        self.echo = echo
        self._csv_path = self.tb_dir / "scalars.csv"
        self._logged = _repair_csv(self._csv_path)
        self._replayed = False
        new = not self._csv_path.exists() or self._csv_path.stat().st_size == 0
        self._csv_file = open(self._csv_path, "a", newline="")
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(["step", "tag", "value"])

    def scalar(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        self.writer.add_scalar(tag, value, step)
        key = (str(step), tag)
        if key in self._logged:  # a resumed stage replays steps the CSV already has
            self._replayed = True
        self._logged.add(key)
        self._csv.writerow([step, tag, value])

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.scalar(tag, value, step)
        if self.echo:
            print(f"[{step}] " + "  ".join(f"{k}={v:.4g}" for k, v in values.items()), flush=True)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: HWC uint8 RGB."""
        self.writer.add_image(tag, np.asarray(image), step, dataformats="HWC")

    def video(self, tag: str, frames: Sequence[np.ndarray] | np.ndarray, step: int,
              fps: int = 20) -> None:
        """``frames``: T x H x W x 3 uint8, shown as an animated GIF in the image dashboard."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        frames = np.asarray(frames)
        data = gif_bytes(frames, fps)
        h, w = frames.shape[1:3]
        img = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=data)
        self.writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=img)]), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for k, v in _flatten(params).items()}
        self.writer.add_hparams(flat, metrics or {}, run_name=".")

    def flush(self) -> None:
        self.writer.flush()
        self._csv_file.flush()

    def close(self) -> None:
        self.writer.close()
        self._csv_file.close()
        if self._replayed:
            _dedupe_csv(self._csv_path)

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _repair_csv(path: Path) -> set[tuple[str, str]]:
    """The (step, tag) pairs already in the CSV at ``path``, after cutting a last line left
    incomplete by a kill (no trailing newline)."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    rows = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    next(rows, None)  # header
    return {(r[0], r[1]) for r in rows if len(r) >= 2}


def _dedupe_csv(path: Path) -> None:
    """Rewrite the CSV with one row per (step, tag), each with its last value, in the order
    the pairs first appeared (atomically)."""
    from .utils import atomic_write

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    last: dict[tuple[str, str], list[str]] = {}
    for row in rows[1:]:
        if len(row) >= 3:
            last[(row[0], row[1])] = row
    with io.StringIO(newline="") as buf:
        writer = csv.writer(buf)
        writer.writerow(rows[0] if rows else ["step", "tag", "value"])
        writer.writerows(last.values())
        text = buf.getvalue()
    atomic_write(path, lambda p: p.write_text(text, newline=""))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
