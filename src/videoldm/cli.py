"""The `videoldm` command: each subcommand is a module of ``videoldm.commands`` and registers itself here."""
from __future__ import annotations

import argparse
import importlib
import sys

from videoldm import __version__

# module path -> that module defines `add_command(subparsers)`; each call adds one subcommand whose
# parser sets `func` (called with the parsed args, returns an exit code).
COMMAND_MODULES = [
    "videoldm.commands.inflate",
    "videoldm.commands.data",
    "videoldm.commands.train",
    "videoldm.commands.evaluate",
    "videoldm.commands.evaluate_videos",
    "videoldm.commands.rollout",
    "videoldm.commands.upsample",
    "videoldm.commands.generate",
    "videoldm.commands.ship",
    "videoldm.commands.serve",
]


class Parser(argparse.ArgumentParser):
    """Every parser of the command (subcommands too): descriptions and examples keep their line breaks."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="videoldm",
                    description="Video latent diffusion (Align your Latents) on top of diffusers image models.")
    parser.add_argument("--version", action="version", version=f"videoldm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a command whose module is not written yet
            if err.name != name:
                raise
            continue
        module.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as err:  # bad input or a file system refusing: one line, not a traceback
        print(f"videoldm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was finished is on disk (train checkpoints, rollout --state)
        print(f"videoldm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
