"""Entry point of the ``stream-orch`` console script.

Each sub-command lives in its own module with a ``register(subparsers)`` function; this
module only wires them together and turns :class:`UserError` into one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from stream_orch import __version__
from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.topology.loader import SCHEMAS_RULE

# Sub-command modules, in the order `--help` lists them.
COMMANDS = (
    "kafka",
    "produce",
    "ingest",
    "tail",
    "validate",
    "diff",
    "graph",
    "console",
    "catalog",
    "schema",
    "run",
    "reload",
    "test",
    "generate",
    "dlq",
    "lag",
    "table",
    "alerts",
    "sink",
    "audit",
    "shadow",
    "forget",
    "acl",
)

_SETTING_FLAGS = {
    "bootstrap_servers": "--bootstrap-servers",
    "security_protocol": "--security-protocol",
    "sasl_mechanism": "--sasl-mechanism",
    "sasl_username": "--sasl-username",
    "ssl_cafile": "--ssl-cafile",
    "ssl_certfile": "--ssl-certfile",
    "ssl_keyfile": "--ssl-keyfile",
    "client_id": "--client-id",
    "metrics_port": "--metrics-port",
    "metrics_host": "--metrics-host",
    "log_level": "--log-level",
    "kafka_port": "--kafka-port",
    "state_dir": "--state-dir",
}


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad argument is one line (what is wrong, and where to look)
    instead of the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_setting_flags(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_argument_group(
        "connection", "Override STREAM_ORCH_* environment variables (passwords: env only)."
    )
    for field, flag in _SETTING_FLAGS.items():
        group.add_argument(flag, dest=f"setting_{field}", default=default, metavar=field.upper())
    group.add_argument(
        "--log-json", dest="setting_log_json", action="store_const", const=True, default=default
    )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *_subparsers(sub)]
    return found


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stream-orch",
        description="Declarative Kafka stream processing: topologies, state, retries, DLQs and lag.",
        epilog=f"Commands that read schemas (validate, diff, run, graph, catalog, test) use {SCHEMAS_RULE}.",
    )
    parser.add_argument("--version", action="version", version=f"stream-orch {__version__}")
    _add_setting_flags(parser, None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"stream_orch.cli.{name}")
        except ModuleNotFoundError as exc:  # a command still being built is simply not offered
            if exc.name == f"stream_orch.cli.{name}":
                continue
            raise
        module.register(subparsers)
    # `stream-orch run X --metrics-port 9400` as well as `stream-orch --metrics-port 9400 run X`:
    # SUPPRESS keeps a sub-command from resetting what was given before it.
    for sub in _subparsers(parser):
        _add_setting_flags(sub, argparse.SUPPRESS)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"invalid setting {where}: {err['msg']}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = settings_from_args(args)
        result = args.func(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except UserError as exc:
        print(f"stream-orch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
