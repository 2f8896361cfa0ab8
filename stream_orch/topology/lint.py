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
from stream_orch.topology.lint_pii import pii_problems
from stream_orch.topology.lint_repartition import after_step, name_clashes, with_internal_topics
from stream_orch.topology.lint_schedule import punctuate_problems, schedule_clashes, schedule_fields
from stream_orch.topology.lint_steps import StepChecks
from stream_orch.topology.lint_windows import window_fields
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
    LookupManyStep,
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
from stream_orch.topology.models_lookup import ITEM
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


class _Linter(OutputChecks, StepChecks):
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
        schedule_clashes(self.loaded.spec, self.add)
        DomainChecks(self.spec, self.schemas, self.add).run()  # enums, joins, windows, shared tables
        delivery_problems(self.spec, self.schemas, self.add)  # targets outside Kafka
        if not self.schemas.error:  # personal data reaching topics whose policy refuses it
            pii_problems(self.loaded.spec, self.schemas.definitions, self.add, self.loaded.line_of)

    def _schema_names(self) -> list[str]:
        return (
            [p.stem for p in self.schemas.directory.glob("*.avsc")] if self.schemas.directory.is_dir() else []
        )

    def _tables(self) -> None:
        used = {
            step.table
            for node in self.spec.nodes.values()
            for step in node.steps
            if isinstance(
                step, EnrichStep | LookupManyStep | DedupeStep | AggregateStep | JoinStep | WindowStep
            )
        }
        used.update(s.table for node in self.spec.nodes.values() if node.schedule for s in node.schedule.scan)
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
        scheduled = node.schedule is not None  # its input is its internal ticks topic
        punctuate_problems(name, node, self.add)
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
        if scheduled:
            avail = schedule_fields(self.spec, name, node, self.add, self._topic_fields)
        elif input_topic is not None and not input_topic.schema_:
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
            if step.window is not None:  # a running aggregate reads no time
                self._field((*path, "time_field"), step.time_field, avail, where)
            elif self.spec.processing == "at_least_once":
                self.add(
                    (*path, "table"),
                    f"{where}: a running aggregate (no `window`) under at_least_once counts a batch "
                    "replayed after a crash again",
                    "use `processing: exactly_once` (state, outputs and offsets in one transaction)",
                    "warning",
                )
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
        if isinstance(step, LookupManyStep):
            if self._table_ref((*path, "table"), step.table) and not self.spec.tables[step.table].topic:
                self.add(
                    (*path, "table"),
                    f"{where}: table `{step.table}` has no `topic`, so nothing fills it for lookups",
                    "set `topic:` on the table to feed it from a topic",
                )
            self._field((*path, "each"), step.each, avail, where)
            self._expression((*path, "key"), step.key, avail | {ITEM} if avail is not None else None, where)
            if step.keep is not None:  # over the row: its fields are the table topic's
                table = self.spec.tables.get(step.table)
                row = self._topic_fields(table.topic) if table is not None and table.topic else None
                self._expression((*path, "keep"), step.keep, set(row) if row is not None else None, where)
            return avail | {step.as_} if avail is not None else None
        if isinstance(step, PythonStep):
            return None  # user code (its module is checked by python_problems): fields unknown after it
        return avail  # pragma: no cover - every step kind is handled above

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
