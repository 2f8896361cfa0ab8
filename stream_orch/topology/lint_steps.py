"""Lint of the steps that meet other data: joins, windows, enrich lookups, and whether a stateful
step is co-partitioned with its input (:class:`StepChecks`, mixed into the linter of
:mod:`stream_orch.topology.lint`, whose ``add``, ``_field``, ``_table_ref`` and
``_topic_fields`` it uses)."""

from __future__ import annotations

from stream_orch.topology.lint_windows import join_bound_fields, window_fields
from stream_orch.topology.loader import PathTuple
from stream_orch.topology.models import EnrichStep, JoinStep, NodeSpec, WindowStep
from stream_orch.topology.schema_fields import suggest


class StepChecks:
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
