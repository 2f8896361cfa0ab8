"""Cases files for ``stream-orch test``: read with the line of everything, checked against the
topology (topics, tables, did-you-mean), and run, each case on a fresh driver.

A file is a mapping with ``cases`` (a list) and optionally ``env`` (``${VAR}`` values for the
topology) and ``start`` (the driver clock at the start of each case). A case has a ``name``,
``inputs`` (records to pipe, ``advance: <duration>`` to move the clock, and ``tick: <time>`` to move
it to a time and fire the scheduled nodes' ticks due by then), and ``expect``
(records per topic) and/or ``tables`` (values per table key). See README "Testing a topology".
"""

from __future__ import annotations

import datetime as dt
import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from stream_orch.errors import UserError
from stream_orch.testing.compare import Expected, compare_table, compare_topic
from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.topology.durations import parse_duration_ms
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import changelog_topic, dlq_topic, retry_topics


class CasesError(UserError):
    """A cases file that cannot be used: ``file:line: message``."""

    exit_code = 2


@dataclass
class Input:
    line: int
    topic: str | None = None  # None: an `advance` or a `tick`
    value: Any = None
    key: str | None = None
    at: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    advance_ms: int = 0
    tick_at: int | None = None  # `- tick: <time>`: the scheduled nodes' ticks due by then


@dataclass
class Case:
    name: str
    line: int
    inputs: list[Input]
    expect: dict[str, tuple[int, list[Expected]]]  # topic -> (line, records)
    tables: dict[str, dict[str, tuple[int, Any]]]  # table -> key -> (line, expected value)


@dataclass
class CasesFile:
    path: Path
    cases: list[Case]
    env: dict[str, str]
    start_ms: int | None


@dataclass
class CaseResult:
    case: Case
    problems: list[str]
    records_in: int
    records_out: int
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------- reading


def read_cases(path: str | Path) -> tuple[CasesFile, Any]:
    """The cases file at ``path`` (shape only; :func:`check_cases` checks names against a
    topology). Raises :class:`CasesError` with the file and line of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CasesError(f"cases file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesError(f"cannot read cases file {path}: {exc}") from None
    reader = _Reader(str(path))
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark is not None else 1
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise CasesError(f"{path}:{where}: YAML syntax error: {message}") from None
    except YAMLError as exc:
        raise CasesError(f"{path}:1: YAML error: {exc}") from None
    return reader.file(tree, path), tree


def check_cases(cases: CasesFile, spec: TopologySpec) -> None:
    """Every topic and table a case names exists in ``spec`` (retry, dead-letter and changelog
    topics included), else :class:`CasesError` with a did-you-mean hint."""
    topics = set(spec.topics)
    for node in spec.nodes.values():
        topics.update([dlq_topic(node), *retry_topics(node)])
    topics.update(changelog_topic(spec.topology, t) for t in spec.tables if spec.tables[t].topic is None)
    for case in cases.cases:
        for item in case.inputs:
            if item.topic is not None and item.topic not in topics:
                _unknown(cases.path, item.line, "topic", item.topic, topics)
        for topic, (line, _) in case.expect.items():
            if topic not in topics:
                _unknown(cases.path, line, "topic", topic, topics)
        for table, keys in case.tables.items():
            if table not in spec.tables:
                line = min((ln for ln, _ in keys.values()), default=case.line)
                _unknown(cases.path, line, "table", table, set(spec.tables))


def _unknown(path: Path, line: int, kind: str, name: str, known: set[str]) -> None:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"{kind}s: {', '.join(sorted(known))}"
    raise CasesError(f"{path}:{line}: unknown {kind} `{name}` (hint: {hint})")


class _Reader:
    """Turns the ruamel tree into cases, raising at the first problem with its line."""

    def __init__(self, file: str) -> None:
        self.file_name = file

    def fail(self, line: int, message: str) -> None:
        raise CasesError(f"{self.file_name}:{line}: {message}")

    def mapping(self, node: Any, line: int, what: str, allowed: set[str] | None) -> CommentedMap:
        """``node`` as a mapping whose keys are all ``allowed`` (any key when None)."""
        if not isinstance(node, CommentedMap):
            self.fail(line, f"{what} must be a mapping")
        for key in node if allowed is not None else ():
            if key not in allowed and key != "<<":
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"did you mean `{close[0]}`?" if close else "allowed: " + ", ".join(sorted(allowed))
                self.fail(_key_line(node, key, line), f"unknown key `{key}` in {what} (hint: {hint})")
        return node

    def file(self, tree: Any, path: Path) -> CasesFile:
        if isinstance(tree, CommentedMap):  # x-...: free keys, a place for YAML anchors
            extensions = {k for k in tree if isinstance(k, str) and k.startswith("x-")}
        else:
            extensions = set()
        top = self.mapping(tree, 1, "a cases file", {"cases", "env", "start", *extensions})
        if "cases" not in top:
            self.fail(1, "`cases` is required (a list of cases)")
        env_node = top.get("env", {})
        env_line = _key_line(top, "env", 1)
        if not isinstance(env_node, dict):
            self.fail(env_line, "`env` must be a mapping of variable names to values")
        start = None
        if "start" in top:
            start = self.time(top["start"], _key_line(top, "start", 1), "start")
        cases_node = top["cases"]
        cases_line = _key_line(top, "cases", 1)
        if not isinstance(cases_node, CommentedSeq) or not cases_node:
            self.fail(cases_line, "`cases` must be a non-empty list of cases")
        cases = [self.case(c, _item_line(cases_node, i, cases_line)) for i, c in enumerate(cases_node)]
        names: dict[str, int] = {}
        for case in cases:
            if case.name in names:
                self.fail(
                    case.line, f"case name `{case.name}` is used twice (first on line {names[case.name]})"
                )
            names[case.name] = case.line
        env = {str(k): "" if v is None else str(v) for k, v in env_node.items()}
        return CasesFile(path, cases, env, start)

    def case(self, node: Any, line: int) -> Case:
        node = self.mapping(node, line, "a case", {"name", "description", "inputs", "expect", "tables"})
        name = node.get("name")
        if not isinstance(name, str) or not name.strip():
            self.fail(line, "a case needs `name:` (text)")
        inputs_node = node.get("inputs")
        inputs_line = _key_line(node, "inputs", line)
        if not isinstance(inputs_node, CommentedSeq) or not inputs_node:
            self.fail(inputs_line, f"case `{name}`: `inputs` must be a non-empty list")
        inputs = []
        for i, x in enumerate(inputs_node):
            at = _item_line(inputs_node, i, inputs_line)
            # a list among the inputs (an anchor reused, `- *stock`) is its inputs in order
            group = list(enumerate(x)) if isinstance(x, CommentedSeq) else [(None, x)]
            inputs += [self.input(y, at if j is None else _item_line(x, j, at)) for j, y in group]
        if "expect" not in node and "tables" not in node:
            self.fail(line, f"case `{name}` checks nothing: give `expect:` and/or `tables:`")
        expect: dict[str, tuple[int, list[Expected]]] = {}
        if "expect" in node:
            exp_line = _key_line(node, "expect", line)
            exp = self.mapping(node["expect"], exp_line, "`expect` (topic: [records])", None)
            for topic, records in exp.items():
                tline = _key_line(exp, topic, exp_line)
                if records is None:
                    records = CommentedSeq()
                if not isinstance(records, CommentedSeq):
                    self.fail(tline, f"`expect.{topic}` must be a list of records ([] for none)")
                expect[str(topic)] = (
                    tline,
                    [self.expected(r, _item_line(records, i, tline)) for i, r in enumerate(records)],
                )
        tables: dict[str, dict[str, tuple[int, Any]]] = {}
        if "tables" in node:
            tab_line = _key_line(node, "tables", line)
            tab = self.mapping(node["tables"], tab_line, "`tables` (table: {key: value})", None)
            for table, keys in tab.items():
                kline = _key_line(tab, table, tab_line)
                keys = self.mapping(keys, kline, f"`tables.{table}` (key: value)", None)
                tables[str(table)] = {str(k): (_key_line(keys, k, kline), plain(v)) for k, v in keys.items()}
        return Case(name.strip(), line, inputs, expect, tables)

    def input(self, node: Any, line: int) -> Input:
        allowed = {"topic", "key", "value", "at", "headers", "advance", "tick"}
        node = self.mapping(node, line, "an input", allowed)
        if "tick" in node:
            if len(node) > 1:
                self.fail(line, '`tick` stands alone: `- tick: "2026-01-01T10:00:00Z"`')
            return Input(line, tick_at=self.time(node["tick"], _key_line(node, "tick", line), "tick"))
        if "advance" in node:
            if len(node) > 1:
                self.fail(line, "`advance` stands alone: `- advance: 1s`")
            try:
                return Input(line, advance_ms=parse_duration_ms(node["advance"]))
            except ValueError as exc:
                self.fail(_key_line(node, "advance", line), str(exc))
        if not isinstance(node.get("topic"), str):
            self.fail(line, "an input needs `topic:` (or is `- advance: <duration>` or `- tick: <time>`)")
        if "value" not in node:
            self.fail(line, "an input needs `value:` (a record, a text, or null for a tombstone)")
        item = Input(line, topic=node["topic"], value=plain(node["value"]))
        if node.get("key") is not None:
            item.key = str(plain(node["key"]))
        if "at" in node:
            item.at = self.time(node["at"], _key_line(node, "at", line), "at")
        item.headers = self.headers(node, line)
        return item

    def expected(self, node: Any, line: int) -> Expected:
        node = self.mapping(node, line, "an expected record", {"key", "value", "headers", "absent"})
        absent = plain(node.get("absent", []))
        if not isinstance(absent, list) or not all(isinstance(a, str) for a in absent):
            self.fail(_key_line(node, "absent", line), "`absent` must be a list of field names")
        key = node.get("key")
        return Expected(
            line=line,
            key=None if key is None else str(plain(key)),
            value=plain(node.get("value")),
            has_value="value" in node,
            headers=self.headers(node, line),
            absent=absent,
        )

    def headers(self, node: CommentedMap, line: int) -> dict[str, str]:
        headers = node.get("headers", {})
        if not isinstance(headers, dict):
            self.fail(_key_line(node, "headers", line), "`headers` must be a mapping of names to text")
        return {str(k): str(plain(v)) for k, v in headers.items()}

    def time(self, value: Any, line: int, what: str) -> int:
        if isinstance(value, bool):
            self.fail(line, f"`{what}` must be epoch ms or an ISO-8601 time with an offset")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                self.fail(line, f"`{what}`: {value!r} is not an ISO-8601 time")
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                self.fail(line, f"`{what}` needs an offset (e.g. 2026-01-01T00:00:00Z)")
            return int(value.timestamp() * 1000)
        self.fail(line, f"`{what}` must be epoch ms or an ISO-8601 time with an offset")
        raise AssertionError  # unreachable


def plain(node: Any) -> Any:
    """Plain Python data from the ruamel tree (merge keys applied; timestamps as ISO text)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, dt.datetime):
        return node.isoformat().replace("+00:00", "Z")
    if isinstance(node, bool | None):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _key_line(node: Any, key: Any, default: int) -> int:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _item_line(node: Any, index: int, default: int) -> int:
    try:
        return node.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


# --------------------------------------------------------------------------- running


def run_case(case: Case, new_driver: Callable[[], TopologyTestDriver]) -> CaseResult:
    """Pipe the case's inputs into a fresh driver and compare what came out."""
    started = time.perf_counter()
    problems: list[str] = []
    with new_driver() as driver:
        try:
            for item in case.inputs:
                if item.tick_at is not None:
                    driver.tick(item.tick_at)
                elif item.topic is None:
                    driver.advance(item.advance_ms / 1000)
                else:
                    driver.pipe(item.topic, item.value, key=item.key, timestamp=item.at, headers=item.headers)
            driver.process()
        except Exception as exc:  # a step the worker would also fail on: report, do not crash
            problems.append(f"line {item.line}: processing failed: {type(exc).__name__}: {exc}")
            return CaseResult(case, problems, 0, 0, time.perf_counter() - started)
        spec = driver.spec
        for topic, (line, expected) in case.expect.items():
            key_field = spec.topics[topic].key if topic in spec.topics else None
            problems += compare_topic(topic, line, expected, driver.records(topic), key_field)
        for table, keys in case.tables.items():
            content = driver.table(table)
            problems += compare_table(table, keys, content)
        records_in = sum(driver.stats(n)["records_in"] for n in spec.nodes)
        records_out = sum(sum(driver.stats(n)["outputs"].values()) for n in spec.nodes)
    return CaseResult(case, problems, records_in, records_out, time.perf_counter() - started)
