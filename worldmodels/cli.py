"""The ``worldmodels`` command and its subcommands.

Each subcommand lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int | None``. Config fields become options ``--SECTION.FIELD VALUE`` automatically
(typed, with the field's docstring as help) through :func:`add_config_arguments`; the repeatable
``--preset`` gives the defaults (a full preset, then overlays), the options apply over it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
import threading
from typing import Any, Iterator, NoReturn, Sequence, get_type_hints

from . import __version__
from .checkpoint import CheckpointError
from .config import (
    DEFAULT_PRESET,
    OVERLAYS,
    PRESETS,
    REMOVED_FIELDS,
    SECTIONS,
    Preset,
    compose_presets,
    field_docs,
    literal_choices,
    option,
    with_overrides,
    with_values,
)
from .video import NoDisplayError

_C = "worldmodels.commands."
COMMANDS: list[tuple[str, str, str]] = [
    ("collect", _C + "collect",
     "collect rollouts (a random policy, or the agent) from the real environment"),
    ("train-vae", _C + "train_vae",
     "train V, the convolutional VAE, on collected frames"),
    ("encode", _C + "encode",
     "encode every rollout to per-frame mu/logvar with a trained V"),
    ("train-rnn", _C + "train_rnn",
     "train M, the MDN-RNN, on encoded rollouts"),
    ("dream", _C + "dream",
     "record or drive the dream of a trained M, decoded through V"),
    ("train-controller", _C + "train_controller",
     "train C with CMA-ES in the dream or the real env"),
    ("evaluate", _C + "evaluate",
     "score an agent (or a baseline policy) on CarRacing-v3 (fast, identical env by default)"),
    ("play", _C + "play",
     "watch the agent drive: a live window or a side-by-side video"),
    ("pipeline", _C + "pipeline",
     "run every stage, collect to evaluate, resuming where it stopped"),
    ("export-agent", _C + "export_agent",
     "write a trained C (with its V and M) as a shipped agent folder, checksummed"),
    ("figures", _C + "figures",
     "draw the README's figures (PNG) from a pipeline run folder"),
    ("bench", _C + "bench",
     "measure the throughput of every stage side by side"),
]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class UsageError(CLIError):
    """A command line argparse refuses (unknown option, bad value): one line naming it."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other refusal
        raise UsageError(self.prog, message)


def add_config_arguments(parser: argparse.ArgumentParser, section: str,
                         exclude: Sequence[str] = (), title: str | None = None) -> None:
    """Add ``--SECTION.FIELD`` for each field of config ``section`` (``rnn``, ``env``, ...):
    typed from the dataclass (a ``Literal`` field takes its values, a bool field
    ``--SECTION.FIELD/--no-SECTION.FIELD``), with the field's docstring as help. An option not
    given keeps the value of the presets."""
    cls = SECTIONS[section]
    docs, hints, choices = field_docs(cls), get_type_hints(cls), literal_choices(cls)
    summary = (cls.__doc__ or "").split("\n")[0].rstrip(".")
    group = parser.add_argument_group(title or f"{section}: {summary} (defaults from --preset)")
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag, dest, kind = option(section, f.name), f"{section}.{f.name}", hints[f.name]
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                               default=None, help=docs.get(f.name))
        elif f.name in choices:
            group.add_argument(flag, dest=dest, choices=choices[f.name],
                               type=type(choices[f.name][0]), default=None, help=docs.get(f.name))
        else:
            group.add_argument(flag, dest=dest, type=kind, default=None,
                               metavar=kind.__name__.upper(), help=docs.get(f.name))


def _given(args: argparse.Namespace, section: str | None = None) -> dict[str, Any]:
    """The ``SECTION.FIELD`` options given on the command line (of ``section`` only, if given)."""
    return {key: value for key, value in vars(args).items()
            if "." in key and value is not None
            and (section is None or key.partition(".")[0] == section)}


def add_preset_argument(parser: argparse.ArgumentParser) -> None:
    overlays = "; ".join(f"{name}: {overlay.doc}" for name, overlay in OVERLAYS.items())
    parser.add_argument(
        "--preset", action="append", choices=[*sorted(PRESETS), *OVERLAYS], metavar="NAME",
        help=f"named configuration giving the defaults; repeatable: a full preset "
             f"({', '.join(sorted(PRESETS))}; default: {DEFAULT_PRESET}), then overlays applied "
             f"over it in order ({overlays}); --SECTION.FIELD options apply over all of them")


def preset_from_args(args: argparse.Namespace) -> Preset:
    """The presets of ``--preset`` composed in order, then every ``--SECTION.FIELD`` given."""
    return with_values(compose_presets(getattr(args, "preset", None) or ()), _given(args))


def config_from_args(args: argparse.Namespace, section: str) -> Any:
    """Config ``section`` of the composed presets with the ``--SECTION.FIELD`` options given;
    unlike :func:`preset_from_args`, the other sections are not checked against it (a stage
    command reads only its own sections)."""
    base = getattr(compose_presets(getattr(args, "preset", None) or ()), section)
    return with_overrides(base, {key.partition(".")[2]: value
                                 for key, value in _given(args, section).items()})


def positive_int(text: str) -> int:
    """argparse type of a count or a size: an integer >= 1 (``--fps 0`` is refused by name)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be in [1, 10,000,000], got {value}")
    return value


def add_agent_argument(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--agent", metavar="NAME|DIR",
                        help="a shipped agent (`agents/zoo/NAME`, e.g. carracing) or an agent "
                             "folder written by `worldmodels export-agent`, instead of "
                             "--controller/--vae/--rnn")


def apply_agent(args: argparse.Namespace, parts: Sequence[str] = ("controller", "vae", "rnn")
                ) -> None:
    """Fill ``args.controller/vae/rnn`` from ``--agent`` (its files checked against the
    manifest); refuse ``--agent`` together with any of them."""
    if getattr(args, "agent", None) is None:
        return
    given = [f"--{p}" for p in parts if getattr(args, p, None) is not None]
    if given:
        raise CLIError(f"--agent gives the checkpoints; drop {', '.join(given)}")
    from .zoo import load_shipped

    shipped = load_shipped(args.agent)
    files = {"controller": shipped.controller, "vae": shipped.vae, "rnn": shipped.mdnrnn}
    for p in parts:
        setattr(args, p, files[p])
    label = shipped.manifest.get("label")
    print(f"agent {shipped.manifest.get('name', args.agent)} ({shipped.folder})"
          + (f": {label}" if label else ""), flush=True)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run: auto picks CUDA when present (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="worldmodels", allow_abbrev=False,
        description="World Models (Ha & Schmidhuber, 2018): learn a generative model of "
                    "CarRacing and train a controller inside its dream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Typical order: collect, train-vae, encode, train-rnn, train-controller, "
               "evaluate, play. `worldmodels pipeline` runs them all.\n"
               "Run `worldmodels COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads of this process (default: the cores not already "
                             "busy by the 1-minute load average, at least 1: threads that "
                             "compete for a loaded CPU slow torch down many times over)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser``'s arguments; an unknown option is refused by name, pointing an option of the
    old flat syntax (``--epochs``) to its ``--SECTION.FIELD`` spelling (``--rnn.epochs``) and a
    removed one (``config.REMOVED_FIELDS``) to the option that replaced it."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = args._parser
        options = [s for action in command._actions for s in action.option_strings]
        near = [o for u in unknown if u.startswith("--") for o in options
                if o.endswith("." + u[2:].partition("=")[0])]
        replaced = {option(*old.split(".")): option(*new.split("."))
                    for old, (new, _) in REMOVED_FIELDS.items()}
        gone = [f"{u} was removed after 0.1.0, {replaced[u]} sets it now"
                for u in (u.partition("=")[0] for u in unknown) if u in replaced]
        hint = (f"; {'; '.join(gone)}" if gone else
                f"; did you mean {' or '.join(near)}?" if near else
                "; config options are --SECTION.FIELD VALUE, see --help"
                if any("." in o for o in options) else "")
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(build_parser(), argv)
    except UsageError as e:
        print(f"{e.prog}: error: {e}", file=sys.stderr)
        return 2
    import torch

    threads, why = choose_threads(args.threads)
    torch.set_num_threads(threads)
    if why:  # stdout: stderr is kept for the one-line error of a refused command
        print(f"worldmodels: {why}", flush=True)
    try:
        with sigterm_as_interrupt():
            result: Any = args._run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (CLIError, CheckpointError, NoDisplayError, OSError, ValueError,
            FloatingPointError) as e:  # OSError: a full disk, an unwritable path
        print(f"worldmodels {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


def choose_threads(requested: int | None, cores: int | None = None,
                   load: float | None = None) -> tuple[int, str]:
    """torch threads for this process, and a note when fewer than the cores were chosen.

    ``requested`` wins. Otherwise the cores this process may use, less the 1-minute load
    average (other processes already running), at least 1: on a 2-core machine busy with
    another run, 2 competing threads made M's training ~50x slower than 1 thread."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    if requested is not None:
        return requested, ""
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    threads = max(1, min(cores, int(round(cores - load))))
    why = (f"{threads} torch thread{'s' * (threads > 1)} (load average {load:.1f} on {cores} "
           "cores; --threads N to choose)") if threads < cores else ""
    return threads, why


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, `kill` (SIGTERM) gets the clean stop of Ctrl-C: KeyboardInterrupt,
    so checkpoints are kept, worker processes ended and temporary files removed (the default
    action would orphan the workers). Only the main thread can set a signal handler; in
    another thread the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_handler)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
