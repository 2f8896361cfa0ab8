"""Check a loaded topology before it runs: every problem with its line and a hint.

The models check each piece on its own; lint checks how the pieces fit: that topics, tables
and schemas exist, that every field a step or expression reads is there at that point of the
node (schema fields plus what earlier steps added), that the flow has no unintended cycle,
and that stateful steps are co-partitioned with their input.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stream_orch.expressions import CompiledExpression, ExpressionError, compile_expression
from stream_orch.topology.graph import find_cycles
from stream_orch.topology.lint_delivery import delivery_problems
from stream_orch.topology.lint_domain import DomainChecks
from stream_orch.topology.lint_models import model_fields, model_problems
from stream_orch.topology.lint_outputs import OutputChecks
from stream_orch.topology.lint_repartition import after_step, name_clashes, with_internal_topics
from stream_orch.topology.lint_windows import join_bound_fields, window_fields
from stream_orch.topology.loader import (
    SCHEMAS_RULE,
    LoadedTopology,
    PathTuple,
    Problem,
    SchemasNotFound,
    Severity,
    find_schemas_dir,
    schemas_dir_candidates,
)
from stream_orch.topology.models import (
    AggregateStep,
    DedupeStep,
    DeriveStep,
    EnrichStep,
    FilterStep,
    JoinStep,
    MaskStep,
    ModelStep,
    NodeSpec,
    NormalizeStep,
    PythonStep,
    ScoreStep,
    TopologySpec,
    ValidateStep,
    WindowStep,
)
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.naming import TOPIC_MAX, derived_topics
from stream_orch.topology.python_modules import python_problems
from stream_orch.topology.schema_fields import SchemaFields, suggest

__all__ = ["SchemaFields", "default_schemas_dir", "has_errors", "lint"]

_EXPRESSION_HINT = (
    "expressions allow literals, field names, + - * / // % **, comparisons, in, and/or/not, "
    "x if c else y and min, max, abs, round, len, lower, upper, coalesce, str, int, float, bool"
)


def default_schemas_dir(topology_path: str | Path) -> Path:
    """The schema folder the rule finds for a topology (see ``loader.find_schemas_dir``), or the
    first folder it tries when none exists."""
    try:
        return find_schemas_dir(topology_path)
    except SchemasNotFound:
        return schemas_dir_candidates(topology_path)[0][0]


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def lint(loaded: LoadedTopology, schemas_dir: str | Path | None = None) -> list[Problem]:
    """Every problem of the topology, errors and warnings, in line order.

    ``schemas_dir`` is ``--schemas``; without it the folder is found by the one rule
    (``loader.SCHEMAS_RULE``), and finding none is a problem naming the folders tried."""
    try:
        schemas = SchemaFields(find_schemas_dir(loaded.path, schemas_dir))
    except SchemasNotFound as exc:
        schemas = SchemaFields(exc.tried[0], error=str(exc))
    linter = _Linter(loaded, schemas)
    linter.run()
    return sorted(linter.problems, key=lambda p: (p.line, p.severity != "error"))


class _Linter(OutputChecks):
    def __init__(self, loaded: LoadedTopology, schemas: SchemaFields) -> None:
        self.loaded = loaded
        self.spec: TopologySpec = with_internal_topics(loaded.spec)
        self.schemas = schemas
        self.problems: list[Problem] = []
        # a large topology repeats its expressions and outputs (a node per region, per tenant):
        # each is checked once per run
        self._compiled: dict[str, CompiledExpression | ExpressionError] = {}
        self.output_checks = {}

    def add(self, path: PathTuple, message: str, hint: str, severity: Severity = "error") -> None:
        self.problems.append(self.loaded.problem(path, message, hint, severity))

    # ------------------------------------------------------------------ whole topology

    def run(self) -> None:
        if self.schemas.error:
            self.add(("topics",), self.schemas.error, f"the schema folder is {SCHEMAS_RULE}")
        for name, topic in self.spec.topics.items():
            if topic.schema_ and not self.schemas.error:
                reason = self.schemas.problem(topic.schema_)
                if reason:
                    self.add(
                        ("topics", name, "schema"),
                        f"topic `{name}`: {reason}",
                        suggest(topic.schema_, self._schema_names(), "schemas"),
                    )
        self._tables()
        self.problems += python_problems(self.loaded) + model_problems(self.loaded)
        for name, node in self.spec.nodes.items():
            self._node(name, node)
        self._cycles()
        name_clashes(self.loaded.spec, self.add)
        DomainChecks(self.spec, self.schemas, self.add).run()  # enums, joins, windows, shared tables
        delivery_problems(self.spec, self.schemas, self.add)  # targets outside Kafka

    def _schema_names(self) -> list[str]:
        return (
            [p.stem for p in self.schemas.directory.glob("*.avsc")] if self.schemas.directory.is_dir() else []
        )

    def _tables(self) -> None:
        used = {
            step.table
            for node in self.spec.nodes.values()
            for step in node.steps
            if isinstance(step, EnrichStep | DedupeStep | AggregateStep | JoinStep | WindowStep)
        }
        for name, table in self.spec.tables.items():
            if table.topic and table.topic not in self.spec.topics:
                self.add(
                    ("tables", name, "topic"),
                    f"table `{name}` is fed by unknown topic `{table.topic}`",
                    suggest(table.topic, self.spec.topics, "topics"),
                )
            if table.key and table.topic in self.spec.topics:
                fields = self._topic_fields(table.topic)
                if fields is not None and table.key not in fields:
                    self.add(
                        ("tables", name, "key"),
                        f"table `{name}`: key field `{table.key}` is not in topic `{table.topic}`",
                        suggest(table.key, fields, "fields"),
                    )
            if name not in used:
                self.add(
                    ("tables", name),
                    f"table `{name}` is not used by any step",
                    "remove it, or reference it from a step (enrich, dedupe, aggregate, window, join)",
                    "warning",
                )

    def _cycles(self) -> None:
        if self.spec.allow_cycles:
            return
        for cycle in find_cycles(self.spec):
            first = cycle[0]
            self.add(
                ("nodes", first, "routes"),
                "cycle: " + " -> ".join([*cycle, first]) + " feed their own input",
                "break the loop, or set `allow_cycles: true` if it is intended",
            )

    def _topic_fields(self, topic: str | None) -> list[str] | None:
        spec = self.spec.topics.get(topic or "")
        if spec is None or not spec.schema_ or self.schemas.error:
            return None
        return self.schemas.fields(spec.schema_)

    # ------------------------------------------------------------------ one node

    def _node(self, name: str, node: NodeSpec) -> None:
        base: PathTuple = ("nodes", name)
        input_topic = self.spec.topics.get(node.input)
        if input_topic is None:
            self.add(
                (*base, "input"),
                f"node `{name}` reads unknown topic `{node.input}`",
                suggest(node.input, self.spec.topics, "topics"),
            )
        if node.errors is None:
            self.add(
                base,
                f"node `{name}` has no `errors` policy",
                f"add `errors: {{dlq: {node.input}.dlq}}` (and `retry:` tiers for transient failures)",
            )
        for topic in derived_topics(node):
            if len(topic) > TOPIC_MAX:
                self.add(
                    (*base, "input"),
                    f"node `{name}`: topic `{topic}` that its errors imply has more than "
                    f"{TOPIC_MAX} characters",
                    "shorten the input topic's name (retry topics are `<input>.retry.<n>`)",
                )
        fields = self._topic_fields(node.input)
        avail: set[str] | None = set(fields) if fields is not None else None
        if input_topic is not None and not input_topic.schema_:
            self.add(
                (*base, "input"),
                f"topic `{node.input}` has no schema: field names in node `{name}` are not checked",
                f"add `schema: <name>` to topic `{node.input}`",
                "warning",
            )
        for i, step in enumerate(node.steps):
            if isinstance(step, RepartitionStep):  # the steps after it read the internal topic
                node = after_step(self, self.spec.topology, name, node, i, avail)
                continue
            avail = self._step(name, node, (*base, "steps", i), step, avail)
        self._routes(name, node, avail)
        if not node.routes:
            self.add(
                base,
                f"node `{name}` has no routes: its results are discarded",
                "add `routes: [{to: <topic>}]`",
                "warning",
            )

    def _field(self, path: PathTuple, name: str, avail: set[str] | None, what: str) -> None:
        if avail is not None and name not in avail:
            self.add(path, f"{what}: unknown field `{name}`", suggest(name, avail, "fields here"))

    def _expression(self, path: PathTuple, source: str, avail: set[str] | None, what: str) -> None:
        expr = self._compiled.get(source)
        if expr is None:
            try:
                expr = compile_expression(source, self.spec.constants)
            except ExpressionError as exc:
                expr = exc
            self._compiled[source] = expr
        if isinstance(expr, ExpressionError):
            self.add(
                path,
                f"{what}: invalid expression `{source.strip()}`: {expr.message} (column {expr.offset + 1})",
                _EXPRESSION_HINT,
            )
            return
        if avail is None:
            return
        for field in sorted(expr.fields - avail):
            known = set(avail) | set(self.spec.constants)
            self.add(
                path,
                f"{what}: unknown field `{field}` in `{expr.source}`",
                suggest(field, known, "fields and constants here"),
            )

    def _table_ref(self, path: PathTuple, table: str) -> bool:
        if table in self.spec.tables:
            return True
        self.add(path, f"unknown table `{table}`", suggest(table, self.spec.tables, "tables"))
        return False

    def _step(
        self, node_name: str, node: NodeSpec, path: PathTuple, step: Any, avail: set[str] | None
    ) -> set[str] | None:
        where = f"node `{node_name}`, step {step.step}"
        if isinstance(step, ValidateStep):
            if step.schema_ and not self.schemas.error:
                reason = self.schemas.problem(step.schema_)
                if reason:
                    self.add(
                        (*path, "schema"), reason, suggest(step.schema_, self._schema_names(), "schemas")
                    )
            elif not step.schema_:
                topic = self.spec.topics.get(node.input)
                if topic is not None and not topic.schema_:
                    self.add(
                        path,
                        f"{where}: input topic `{node.input}` has no schema to validate against",
                        "set `schema:` on the step or on the topic",
                    )
            return avail
        if isinstance(step, NormalizeStep):
            for field, rule in step.fields.items():
                if avail is not None and field not in avail:
                    if rule.default is not None or not rule.required:
                        avail = avail | {field}  # an optional field the rule may fill in
                    else:
                        self._field((*path, "fields", field), field, avail, where)
            return avail
        if isinstance(step, DeriveStep):
            for field, source in step.fields.items():
                self._expression((*path, "fields", field), source, avail, f"{where}, field {field}")
                if avail is not None:
                    avail = avail | {field}
            return avail
        if isinstance(step, FilterStep):
            self._expression((*path, "when"), step.when, avail, where)
            return avail
        if isinstance(step, DedupeStep):
            self._table_ref((*path, "table"), step.table)
            self._field((*path, "field"), step.field, avail, where)
            self._field((*path, "time_field"), step.time_field, avail, where)
            return avail
        if isinstance(step, EnrichStep):
            return self._enrich(node_name, node, path, step, avail)
        if isinstance(step, AggregateStep):
            if self._table_ref((*path, "table"), step.table):
                self._copartitioned(node_name, node, path, step.table, step.key, "aggregate")
            self._field((*path, "key"), step.key, avail, where)
            window_fields(self, path, step, avail, where)
            self._field((*path, "time_field"), step.time_field, avail, where)
            if step.when is not None:
                self._expression((*path, "when"), step.when, avail, where)
            return avail | set(step.results()) if avail is not None else None
        if isinstance(step, JoinStep):
            return self._join(node_name, node, path, step, avail)
        if isinstance(step, WindowStep):
            return self._window(node_name, node, path, step, avail)
        if isinstance(step, ScoreStep):
            for i, rule in enumerate(step.rules):
                self._expression((*path, "rules", i, "when"), rule.when, avail, f"{where}, rule {rule.name}")
            if step.logistic is not None:
                for field in step.logistic.coefficients:
                    self._field((*path, "logistic", "coefficients", field), field, avail, where)
            return avail | {step.as_, step.reasons} if avail is not None else None
        if isinstance(step, MaskStep):
            for field, how in step.fields.items():
                self._field((*path, "fields", field), field, avail, where)
                if how == "drop" and avail is not None:
                    avail = avail - {field}
            return avail
        if isinstance(step, ModelStep):
            return model_fields(self, path, step, avail, where)
        if isinstance(step, PythonStep):
            return None  # user code (its module is checked by python_problems): fields unknown after it
        return avail  # pragma: no cover - every step kind is handled above

    def _join(
        self, node_name: str, node: NodeSpec, path: PathTuple, step: JoinStep, avail: set[str] | None
    ) -> set[str] | None:
        """The other stream exists and is co-partitioned with the input; fields on both sides."""
        where = f"node `{node_name}`, step join"
        self._table_ref((*path, "table"), step.table)
        self._field((*path, "key"), step.key, avail, where)
        join_bound_fields(self, path, step, avail, where)
        self._field((*path, "time_field"), step.time_field, avail, where)
        other = self.spec.topics.get(step.topic)
        if other is None:
            self.add(
                (*path, "topic"),
                f"{where}: unknown topic `{step.topic}`",
                suggest(step.topic, self.spec.topics, "topics"),
            )
            return None
        mine = self.spec.topics.get(node.input)
        if mine is not None and other.partitions != mine.partitions:
            self.add(
                (*path, "topic"),
                f"{where}: `{step.topic}` has {other.partitions} partitions but input `{node.input}` has "
                f"{mine.partitions} (a join needs both co-partitioned)",
                "give both topics the same partition count and key",
            )
        other_key = step.other_key or step.key
        if mine is not None and other.key and mine.key and (other.key, mine.key) != (other_key, step.key):
            self.add(
                (*path, "key"),
                f"{where}: joins `{node.input}` by `{step.key}` and `{step.topic}` by `{other_key}`, but "
                f"they are keyed by `{mine.key}` and `{other.key}` (not co-partitioned)",
                "key both topics by the join field, or repartition one first",
            )
        other_fields = self._topic_fields(step.topic)
        if other_fields is not None:
            known = set(other_fields)
            self._field((*path, "other_key"), other_key, known, f"{where}, topic `{step.topic}`")
            self._field((*path, "time_field"), step.time_field, known, f"{where}, topic `{step.topic}`")
            for i, field in enumerate(step.fields or []):
                self._field((*path, "fields", i), field, known, f"{where}, topic `{step.topic}`")
        copied = step.fields if step.fields is not None else other_fields
        if avail is None or copied is None:
            return None
        return avail | {step.prefix + f for f in copied} | {step.status_as}

    def _window(
        self, node_name: str, node: NodeSpec, path: PathTuple, step: WindowStep, avail: set[str] | None
    ) -> set[str]:
        """Fields against the schema, co-partitioning; the stream is the window results after it."""
        where = f"node `{node_name}`, step window"
        if self._table_ref((*path, "table"), step.table):
            self._copartitioned(node_name, node, path, step.table, step.key, "window")
        self._field((*path, "key"), step.key, avail, where)
        window_fields(self, path, step, avail, where)
        self._field((*path, "time_field"), step.time_field, avail, where)
        if path[-1] != len(node.steps) - 1 and node.errors is not None and node.errors.retry is not None:
            self.add(
                path,
                f"{where}: the steps after it see window results, and a result they send to the retry "
                f"tiers would come back to this node as an input record",
                "put the window step last, or send its results to a topic another node reads",
                "warning",
            )
        return {step.key, "window_start", "window_end", *step.results()}

    def _enrich(
        self, node_name: str, node: NodeSpec, path: PathTuple, step: EnrichStep, avail: set[str] | None
    ) -> set[str] | None:
        where = f"node `{node_name}`, step enrich"
        self._field((*path, "key"), step.key, avail, where)
        row_fields: list[str] | None = None
        if self._table_ref((*path, "table"), step.table):
            self._copartitioned(node_name, node, path, step.table, step.key, "enrich")
            table = self.spec.tables[step.table]
            row_fields = self._topic_fields(table.topic) if table.topic else None
            if not table.topic:
                self.add(
                    (*path, "table"),
                    f"{where}: table `{step.table}` has no `topic`, so nothing fills it for lookups",
                    "set `topic:` on the table to feed it from a topic",
                    "warning",
                )
        if step.fields is not None and row_fields is not None:
            for i, field in enumerate(step.fields):
                if field not in row_fields:
                    self.add(
                        (*path, "fields", i),
                        f"{where}: table `{step.table}` rows have no field `{field}`",
                        suggest(field, row_fields, "row fields"),
                    )
        if step.on_missing == "retry" and (node.errors is None or node.errors.retry is None):
            self.add(
                (*path, "on_missing"),
                f"{where}: on_missing is retry but node `{node_name}` has no retry tiers",
                "add `errors: {retry: {delays: [1s, 5s]}}`; without tiers the event goes to the DLQ",
                "warning",
            )
        elif step.on_missing == "retry" and node.errors and node.errors.retry and node.errors.retry.on:
            reason = step.missing_reason or f"unknown_{step.key.removesuffix('_id')}"
            if reason not in node.errors.retry.on:
                self.add(
                    (*path, "on_missing"),
                    f"{where}: reason `{reason}` is not in the node's errors.retry.on, so it is not retried",
                    f"add `{reason}` to errors.retry.on",
                    "warning",
                )
        if avail is None:
            return None
        copied = step.fields if step.fields is not None else row_fields
        if copied is None:
            return None  # all fields of an unknown row
        return avail | {step.prefix + f for f in copied}

    def _copartitioned(
        self, node_name: str, node: NodeSpec, path: PathTuple, table_name: str, key: str, kind: str
    ) -> None:
        """A non-global table must be partitioned like the node input, by the same key."""
        table = self.spec.tables[table_name]
        if table.global_:
            return
        topic = self.spec.topics.get(node.input)
        if topic is None:
            return
        hint = f"make table `{table_name}` global, or put `{{step: repartition, by: {key}}}` before it"
        if topic.key and key != topic.key:
            self.add(
                (*path, "key"),
                f"node `{node_name}`, step {kind}: table `{table_name}` is used by key `{key}` but input "
                f"topic `{node.input}` is keyed by `{topic.key}` (not co-partitioned)",
                hint,
            )
        source = self.spec.topics.get(table.topic or "")
        if source is not None and source.partitions != topic.partitions:
            self.add(
                (*path, "table"),
                f"node `{node_name}`, step {kind}: table `{table_name}` comes from `{table.topic}` "
                f"({source.partitions} partitions) but input `{node.input}` has {topic.partitions}",
                f"give both topics the same partition count, or make table `{table_name}` global",
            )

    # ------------------------------------------------------------------ routes

    def _routes(self, node_name: str, node: NodeSpec, avail: set[str] | None) -> None:
        base: PathTuple = ("nodes", node_name, "routes")
        otherwise = 0
        for i, route in enumerate(node.routes):
            where = f"node `{node_name}`, route {i + 1}"
            if route.when is not None:
                self._expression((*base, i, "when"), route.when, avail, where)
            if route.otherwise:
                otherwise += 1
                if otherwise == 2:
                    self.add(
                        (*base, i, "otherwise"),
                        f"{where}: a second `otherwise` route",
                        "merge them into one route with several topics in `to`",
                        "warning",
                    )
            for j, target in enumerate(route.targets()):
                tpath: PathTuple = (*base, i, "to", j)
                topic = self.spec.topics.get(target.topic)
                if topic is None:
                    self.add(
                        tpath,
                        f"{where}: routes to undeclared topic `{target.topic}`",
                        suggest(target.topic, self.spec.topics, "topics")
                        + "; declare every output topic under `topics:`",
                    )
                out = avail | set(target.set) if avail is not None else None
                for field, source in target.set.items():
                    self._expression((*tpath, "set", field), source, avail, f"{where}, set {field}")
                if topic is not None:
                    self._output_schema(tpath, where, target.topic, target.set, avail)
                if target.key:
                    self._field((*tpath, "key"), target.key, out, f"{where}, key of `{target.topic}`")
                elif topic is not None and topic.key and out is not None and topic.key not in out:
                    self.add(
                        tpath,
                        f"{where}: records for `{target.topic}` have no key field `{topic.key}`",
                        "set `key:` on the route target, or add the field with `set`",
                        "warning",
                    )
