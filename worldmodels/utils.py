"""Small shared helpers: atomic file writes, hashing, devices, seeding, read-ahead."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np
import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object],
                 suffix: str = ".tmp") -> Path:
    """Write ``path`` via ``write(tmp_path)`` then rename, so readers never see half a file.

    The temporary file sits in the same folder (rename is atomic only within a filesystem),
    ends with ``suffix`` (a writer that picks the format from the extension needs it) and
    is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    # mkstemp makes the file 0600; give it the mode an ordinary write would (umask applied),
    # so a run folder shared by a team or a cluster stays readable.
    umask = os.umask(0o022)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


_TEMP_NAME = re.compile(r"\..+\..+\.tmp")  # atomic_write's temporary files: .NAME.RANDOM.tmp


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``folder`` when its
    process was killed mid-write (SIGKILL skips the cleanup). Call it only while owning the
    folder (``runs.start_run`` does, under the folder's lock). Returns what was removed."""
    removed = []
    for path in Path(folder).iterdir():
        if path.is_file() and _TEMP_NAME.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a malformed one raises ValueError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cannot parse {path}: {e}") from e


def relative_path(path: str | os.PathLike, folder: str | os.PathLike) -> str | None:
    """``path`` relative to ``folder`` (both resolved), None where there is none (another drive,
    on Windows): how run records name a file or folder of the same run, so that a run folder
    moved or copied whole still finds it."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:
        return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but torch sees no CUDA device "
                         "(use --device cpu, or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_finite(value: float, what: str, step: int,
                 checkpoint: str | os.PathLike | None = None) -> None:
    """Stop training with a clear message on a NaN or infinite loss, saying whether a
    checkpoint (``checkpoint``, the trainer's file) holds the last good state."""
    if not np.isfinite(value):
        kept = (f"the last good checkpoint, {checkpoint}, is kept" if checkpoint is not None
                and Path(checkpoint).is_file() else "no checkpoint had been written yet")
        raise FloatingPointError(
            f"{what} became {value} at step {step}; {kept}. "
            "Try a lower learning rate or check the input data."
        )


def exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """In a worker process: exit as soon as ``parent`` (the pid the parent passed down; a
    spawned worker can outlive a parent killed while it was still importing) is gone,
    however it died (a SIGKILL leaves it no chance to stop its workers). A daemon thread
    watches the parent's pid."""
    import time

    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:   # re-parented: the parent has died
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


T = TypeVar("T")


class _Failed:
    """The exception that ended a :class:`Prefetch` worker, on its way to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()  # a Prefetch worker's last item: the producer is exhausted


class Prefetch(Generic[T]):
    """Iterate ``items`` in a background thread that runs up to ``ahead`` items ahead of the
    consumer: shards are read and decompressed while the model computes.

    An exception raised by ``items`` is raised to the consumer, after the items before it.
    :meth:`close` (or the end of a ``with`` block) stops the thread and waits for it, also
    when the consumer stops early: it sets ``stop``, which a producer that takes long over
    one item may pass in and check, to give up that item.
    """

    def __init__(self, items: Iterable[T], ahead: int, name: str = "prefetch",
                 stop: threading.Event | None = None):
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.stop = stop if stop is not None else threading.Event()
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(_Failed(e))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:  # a generator stopped early runs its cleanup here
                close()

    def _put(self, item: object) -> bool:
        """Queue ``item`` once there is room; False if the consumer stopped first."""
        while not self.stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self.stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
