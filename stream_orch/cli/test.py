"""``stream-orch test TOPOLOGY CASES``: run a cases file through the topology test driver and
print a pass/fail table, then a diff per failed case. Exit 0 when every case passed, 1 when one
failed, 2 when the cases file cannot be used."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from stream_orch.cli.schemas_dir import add_schemas_option
from stream_orch.cli.topology_file import load_or_report
from stream_orch.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test",
        help="run a topology's test cases in-process, without a broker",
        description="Pipe each case's inputs into the topology in memory (the worker's steps, routes, "
        "retries and DLQ, no broker) and compare the records per output topic: the fields given "
        "must match, records of one key in order. Exit 1 if a case fails, 2 if the cases file is "
        "malformed (file:line: message).",
    )
    parser.add_argument("topology", type=Path, help="topology YAML file")
    parser.add_argument("cases", type=Path, help="cases YAML file (see README, 'Testing a topology')")
    add_schemas_option(parser)
    parser.add_argument(
        "-k",
        "--case",
        action="append",
        default=None,
        metavar="TEXT",
        help="run only the cases whose name contains TEXT (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from stream_orch.codecs import SchemaError, SchemaRegistry
    from stream_orch.errors import UserError
    from stream_orch.testing import TopologyTestDriver
    from stream_orch.testing.cases import check_cases, read_cases, run_case
    from stream_orch.topology.lint import has_errors, lint
    from stream_orch.topology.loader import find_schemas_dir

    cases, _ = read_cases(args.cases)  # CasesError: one line, exit 2
    loaded = load_or_report(args.topology, {**os.environ, **cases.env})
    if loaded is None:
        return 1
    schema_dir = find_schemas_dir(args.topology, args.schemas)  # the error names the folders tried
    problems = lint(loaded, schema_dir)
    if has_errors(problems):  # as `run`: never test a graph the worker would refuse
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    check_cases(cases, loaded.spec)
    try:
        schemas = SchemaRegistry(schema_dir)
    except SchemaError as exc:
        raise UserError(f"schemas: {exc}") from None
    selected = [c for c in cases.cases if not args.case or any(k in c.name for k in args.case)]
    if not selected:
        raise UserError(f"no case of {args.cases} matches {' or '.join(map(repr, args.case))}")
    # the DLQ's warning per dead letter is the worker's log, not this command's output
    logging.getLogger("stream_orch").setLevel(logging.ERROR)

    def new_driver() -> TopologyTestDriver:
        return TopologyTestDriver(
            loaded, schemas=schemas, start_ms=cases.start_ms, dlq_tracebacks=settings.dlq_tracebacks
        )

    spec = loaded.spec
    print(f"{spec.topology} {spec.version} ({args.topology}): {len(selected)} cases from {args.cases}")
    print()
    width = max(len(c.name) for c in selected)
    print(f"  {'result':<6}  {'case':<{width}}  {'in':>4}  {'out':>4}  {'ms':>5}")
    results = []
    for case in selected:
        result = run_case(case, new_driver)
        results.append(result)
        verdict = "PASS" if result.passed else "FAIL"
        print(
            f"  {verdict:<6}  {case.name:<{width}}  {result.records_in:>4}  {result.records_out:>4}  "
            f"{result.seconds * 1000:>5.0f}",
            flush=True,
        )
    failed = [r for r in results if not r.passed]
    for result in failed:
        print()
        print(f"FAIL {result.case.name} ({args.cases}:{result.case.line})")
        for problem in result.problems:
            print("  " + problem.replace("\n", "\n  "))
    print()
    n = len(results)
    print(f"{n} case{'' if n == 1 else 's'}: {n - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
