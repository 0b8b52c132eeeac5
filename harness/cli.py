"""The `harness` command. Each subcommand lives in the module it is named after, which provides
`add_arguments(parser)` and `run(args) -> int` (the exit code); modules are imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "run": "Check conformance, sweep load across the limit, report and gate: the main job.",
    "check": "Run the conformance suite against an endpoint (or the reference server).",
    "bench": "Generate load and measure TTFT, ITL, latency and throughput.",
    "report": "Write the HTML/Markdown report of one or more runs.",
    "gate": "Pass or fail a run against SLOs and a baseline.",
}


def _module(name: str) -> object:
    return importlib.import_module(f"harness.commands.{name}")


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Load-test and conformance-check LLM APIs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands if commands is not None else COMMANDS:
        try:
            module = _module(name)
        except ModuleNotFoundError as exc:
            if exc.name != f"harness.commands.{name}":
                raise
            continue
        command = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        module.add_arguments(command)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = [argv[0]] if argv and argv[0] in COMMANDS else None
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = _module(args.command).run(args)  # type: ignore[attr-defined]
    return code


if __name__ == "__main__":
    sys.exit(main())
