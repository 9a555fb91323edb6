"""``kantaloupe <component>``: one CLI, a subcommand per component.

Each subcommand lives in its component's ``command`` module, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them and maps errors
to exit codes (2: the user's input is wrong, 1: an internal failure).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from kantaloupe import __version__
from kantaloupe.api import errors

_COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("kantaloupe.sim.command", "replay a scenario or trace through the scheduler core"),
    "size": ("kantaloupe.sizing.command", "size a GPU slice from a model and its token length"),
    "scheduler": ("kantaloupe.extender.command", "serve the kube-scheduler extender"),
    "webhook": ("kantaloupe.webhook.command", "serve the mutating admission webhook"),
    "node-agent": ("kantaloupe.node.command", "run the node agent (device plugin, monitor)"),
}


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command | None:
    module_name, _ = _COMMANDS[name]
    try:
        return cast(_Command, importlib.import_module(module_name))
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kantaloupe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kantaloupe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name) and (command := _load(name)) is not None:
            command.add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if a in _COMMANDS), None)
    args = build_parser(only=chosen).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
    )
    command = _load(args.command)
    if command is None:
        print(f"kantaloupe: {args.command} is not part of this build", file=sys.stderr)
        return 2
    try:
        return command.run(args)
    except errors.InputError as e:
        print(f"kantaloupe {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`| head`): nothing left to say
        return 0
    except Exception as e:
        if args.debug:
            raise
        print(
            f"kantaloupe {args.command}: internal error: {errors.shorten(str(e))} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
