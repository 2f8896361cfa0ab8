"""The topology language.

These models are the single source of truth of a topology: the loader validates YAML with
them, ``stream-orch schema`` prints their JSON Schema, and the reference docs are generated
from their field descriptions. Keep every description true: users read it in their editor.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from stream_orch.topology.durations import DurationMs
from stream_orch.topology.models_delivery import HttpRoute, PostgresRoute, route_entry_tag
from stream_orch.topology.models_expression import Expression
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.models_model import ModelStep
from stream_orch.topology.models_sliding import AggregateStep
from stream_orch.topology.models_time import Aggregation, Bound, WindowFunction
from stream_orch.topology.naming import Name, TopicName


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    # a step that writes its `table` (split like the node's input, backed by a changelog)
    writes_table: ClassVar[bool] = False


# --------------------------------------------------------------------------- topics


class TopicSpec(_Model):
    partitions: int = Field(
        6, ge=1, description="Partition count; an existing topic must have at least this."
    )
    replication: int = Field(1, ge=1, description="Replication factor used when the topic is created.")
    key: str | None = Field(None, description="Field of the value that is the record key.")
    schema_: str | None = Field(
        None,
        alias="schema",
        description="Name of the Avro schema in schemas/ (file <name>.avsc) that the value follows.",
    )
    format: Literal["json", "avro"] = Field("json", description="Serialization of the value.")
    compact: bool = Field(False, description="Log compaction (cleanup.policy=compact) instead of deletion.")
    retention: DurationMs | None = Field(None, description="retention.ms; the broker default when unset.")
    description: str | None = Field(None, description="What the topic carries, for the docs.")


# --------------------------------------------------------------------------- tables


class TableSpec(_Model):
    topic: TopicName | None = Field(
        None,
        description="Feed the table from this topic (latest value per record key). "
        "Leave unset for a table that a step writes (dedupe, aggregate).",
    )
    global_: bool = Field(
        False,
        alias="global",
        description="Every worker holds every partition (a global table): lookups need not be "
        "co-partitioned with the node's input.",
    )
    key: str | None = Field(
        None, description="Field that keys the table (defaults to the source topic's key)."
    )
    store: Literal["rocksdb", "memory"] = Field(
        "rocksdb",
        description="Where a table that steps write keeps its partitions: rocksdb (on local disk "
        "under STREAM_ORCH_STATE_DIR, bounded memory, reused after a restart: only the changelog's "
        "tail is read) or memory (restored in full from the changelog on every assignment).",
    )
    description: str | None = None


# --------------------------------------------------------------------------- steps


class ValidateStep(_Model):
    step: Literal["validate"]
    schema_: str | None = Field(
        None, alias="schema", description="Schema to check against; defaults to the input topic's schema."
    )


class FieldRule(_Model):
    """How one field is harmonised; the rules apply in the order listed here."""

    required: bool = Field(True, description="A missing or null value is an error (unless default is set).")
    default: Any = Field(None, description="Value used when the field is missing or null.")
    type: Literal["string", "int", "float", "bool"] | None = Field(
        None, description="Coerce to this type; numeric strings become numbers."
    )
    strip: bool = Field(False, description="Trim surrounding whitespace.")
    case: Literal["upper", "lower"] | None = None
    id_format: IdFormat | None = Field(
        None,
        alias="id",
        description="Identifier harmonisation: digits are extracted and rendered as prefix + zero-padded "
        "digits, so 123, '123', 'C123' and 'C-000123' all become 'C-000123'.",
    )
    timestamp: Literal["epoch_ms"] | None = Field(
        None,
        description="Parse epoch milliseconds, epoch seconds or ISO-8601 (with an offset) into epoch ms UTC.",
    )
    one_of: list[Any] | None = Field(None, description="Allowed values (after coercion).")
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    pattern: str | None = Field(None, description="Regular expression the string value must match fully.")


class IdFormat(_Model):
    prefix: str = Field("", description="Text before the digits, e.g. 'C-'.")
    digits: int = Field(6, ge=1, le=32, description="Zero-padded width of the number.")


class NormalizeStep(_Model):
    step: Literal["normalize"]
    fields: dict[str, FieldRule] = Field(description="Field name to its harmonisation rule.")


class DeriveStep(_Model):
    step: Literal["derive"]
    fields: dict[str, Expression] = Field(
        description="New or replaced fields, computed in order (a later one may use an earlier one)."
    )


class FilterStep(_Model):
    step: Literal["filter"]
    when: Expression = Field(description="Keep the event when this is true; others are dropped and counted.")


class DedupeStep(_Model):
    step: Literal["dedupe"]
    writes_table: ClassVar[bool] = True
    field: str = Field(description="Field whose value identifies an event (e.g. txn_id).")
    table: Name = Field(description="Table that remembers the identifiers seen.")
    horizon: DurationMs = Field(description="How long, in event time, an identifier is remembered.")
    time_field: str = Field("ts", description="Event-time field, epoch ms.")


class EnrichStep(_Model):
    step: Literal["enrich"]
    table: Name = Field(description="Table to look up.")
    key: str = Field(description="Field of the event holding the lookup key.")
    fields: list[str] | None = Field(None, description="Fields of the row to copy (all when unset).")
    prefix: str = Field("", description="Prefix for the copied field names.")
    on_missing: Literal["drop", "default", "retry"] = Field(
        "retry",
        description="No row for the key: drop the event, use `defaults`, or send it through the retry "
        "tiers (reason `unknown_<key without _id>`, e.g. unknown_customer) and then the DLQ.",
    )
    defaults: dict[str, Any] = Field(default_factory=dict, description="Row used when on_missing is default.")
    missing_reason: str | None = Field(None, description="Reason recorded for a missing row.")


class WindowStep(_Model):
    """Tumbling, hopping or session windows per key whose results are emitted as records.

    The step replaces the stream: the records it reads are absorbed (counted as dropped,
    `windowed`) and the routes receive window results `{<key>: ..., window_start, window_end,
    <as>: ...}` (or one field per `aggregate` name; epoch ms; for a session the times of its first
    and last record). A window closes when the partition's watermark (its greatest event time
    read so far) reaches `window_end + grace` (a session: once it passes its last record's time + gap
    + grace); event time moves only with records.
    """

    step: Literal["window"]
    writes_table: ClassVar[bool] = True
    table: Name = Field(description="Table holding the open windows and the partition's watermark.")
    key: str = Field(description="Field that groups records (e.g. merchant_id); the input topic's key.")
    time_field: str = Field("ts", description="Event-time field, epoch ms (negative times are invalid).")
    kind: Literal["tumbling", "hopping", "session"] = Field(
        description="tumbling: [s, s + size) with s a multiple of size; hopping: every [s, s + size) with s "
        "a multiple of advance that holds the record; session: records at most `gap` apart, per key "
        "(Kafka Streams' rule)."
    )
    size: DurationMs | None = Field(None, description="tumbling, hopping: window length, > 0.")
    advance: DurationMs | None = Field(
        None, description="hopping: distance between window starts, 0 < advance <= size."
    )
    gap: DurationMs | None = Field(None, description="session: inactivity that ends a session, > 0.")
    grace: DurationMs = Field(
        0, description="How long after its end a window still takes records arriving out of order (>= 0)."
    )
    function: WindowFunction = Field(
        "count",
        description="With `as`, what it receives: count (int); sum (int while every value is an int, else "
        "float); min, max (numbers); avg (float); first, last (the value of the record with the least, "
        "greatest time); latest (as last); collect (the values in arrival order, at most 1000 kept); "
        "count_distinct (the number of distinct values, at most 10000 counted).",
    )
    field: str | None = Field(None, description="With `as`: the field aggregated (every function but count).")
    aggregate: dict[str, Aggregation] | None = Field(
        None,
        description="Several results per window instead of `as`/`function`/`field`: result field to "
        "`count` or to `{<function>: <field>}`, e.g. `{n: count, first_hub: {first: hub}, total: {sum: "
        "amount}}`; the functions are those of `function`. A record missing one of the fields (or with "
        "a non-number for sum/min/max/avg) is rejected.",
    )
    emit: Literal["on_close", "on_update"] = Field(
        "on_close",
        description="on_close: one final record per window once it closes; on_update: a record with the "
        "window's new result for every record that changes it.",
    )
    late: Literal["drop", "dlq"] = Field(
        "drop",
        description="A record whose windows have all closed (late beyond grace): drop it, counted as "
        "`late_event`, or send it to the DLQ with reason `late_event`.",
    )
    as_: str | None = Field(
        None, alias="as", description="Field of the result record that receives `function`'s result."
    )
    idle_timeout: DurationMs = Field(
        60_000,
        description="When the input is written by another node of the topology (watermarks: per_source): "
        "a source partition of that node not heard from (records or watermark records) for this long, by the "
        "worker's clock, is left out of the minimum, so an idle source does not hold windows open for ever.",
    )

    def results(self) -> dict[str, tuple[str, str | None]]:
        """Each result field with the function computing it and the field it reads."""
        if self.aggregate is None:
            return {self.as_ or "": (self.function, self.field)}
        return {n: ("count", None) if a == "count" else a.function_field() for n, a in self.aggregate.items()}

    @model_validator(mode="after")
    def _kind_fields(self) -> WindowStep:
        if self.kind == "session":
            if not self.gap:
                raise ValueError("a session window needs `gap` > 0")
            if self.size is not None or self.advance is not None:
                raise ValueError("`size`/`advance` belong to tumbling and hopping windows, not sessions")
        else:
            if not self.size:
                raise ValueError(f"a {self.kind} window needs `size` > 0")
            if self.gap is not None:
                raise ValueError("`gap` belongs to session windows")
            if self.kind == "hopping" and not (self.advance and self.advance <= self.size):
                raise ValueError("a hopping window needs `advance` with 0 < advance <= size")
            if self.kind == "tumbling" and self.advance is not None:
                raise ValueError("`advance` belongs to hopping windows")
        if self.aggregate is not None:
            if self.as_ is not None or {"function", "field"} & self.model_fields_set:
                raise ValueError("`aggregate` replaces `as`, `function` and `field`: use one form")
            if not self.aggregate:
                raise ValueError("`aggregate` needs at least one result")
            clash = {self.key, "window_start", "window_end"} & set(self.aggregate)
            if clash:
                raise ValueError(f"`aggregate` names a result `{min(clash)}`, a field the window sets itself")
            return self
        if self.as_ is None:
            raise ValueError("a window needs `as` (one result) or `aggregate` (several)")
        if self.function != "count" and not self.field:
            raise ValueError(f"window function {self.function!r} needs `field`")
        return self


class ScoreRule(_Model):
    name: str = Field(description="Listed in the output's reasons when the rule fires.")
    when: Expression
    weight: float


class Logistic(_Model):
    intercept: float = 0.0
    coefficients: dict[str, float] = Field(description="Field name to coefficient.")


class ScoreStep(_Model):
    step: Literal["score"]
    rules: list[ScoreRule] = Field(default_factory=list)
    as_: str = Field("score", alias="as", description="Field that receives the score.")
    reasons: str = Field("reasons", description="Field that receives the names of the rules that fired.")
    cap: float | None = Field(1.0, description="Upper bound of the summed weights (null: no bound).")
    round: int | None = Field(2, ge=0, description="Decimals the score is rounded to.")
    logistic: Logistic | None = Field(
        None, description="Add sigmoid(intercept + sum(coef * field)) as one more term."
    )


class MaskStep(_Model):
    step: Literal["mask"]
    fields: dict[str, Literal["hash", "drop"]] = Field(
        description="PII field to `hash` (HMAC-SHA256 hex digest under `key`) or `drop`."
    )
    key: str = Field(
        "",
        description="Secret key of the HMAC; give it from the environment, e.g. "
        '`key: "${STREAM_ORCH_MASK_KEY:}"`. Empty: a public demo key, and a warning when the worker '
        "starts.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_salt(cls, data: Any) -> Any:
        if isinstance(data, dict) and "salt" in data:
            raise ValueError(
                "`salt` is replaced by `key`: mask hashes with HMAC-SHA256 under a secret key now "
                '(e.g. `key: "${STREAM_ORCH_MASK_KEY:}"`), so the digests change'
            )
        return data


class PythonStep(_Model):
    step: Literal["python"]
    function: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`module:function`, sync or async, from the topology file's folder, `python_paths` or "
        "`python_packages`. Called with a record dict per event (returns the new dict, or None to drop "
        "it), or with the list of dicts when batch is true.",
    )
    batch: bool = False
    retry_on: list[str] = Field(
        default_factory=list, description="Exception class names that are retried rather than dead-lettered."
    )


class JoinStep(_Model):
    step: Literal["join"]
    writes_table: ClassVar[bool] = True
    topic: TopicName = Field(
        description="The other stream, co-partitioned with the node's input (same partition count and "
        "key). Its records enter the node at this step (the steps before it see only the input's)."
    )
    table: Name = Field(description="Table buffering both sides until event time passes their bound.")
    key: str = Field(description="Field of the input's records that must equal the other side's.")
    other_key: str | None = Field(None, description="Field of the other side's records (default: `key`).")
    time_field: str = Field("ts", description="Event-time field of both sides, epoch ms.")
    kind: Literal["interval", "as_of"] = Field(
        "interval",
        description="interval: every other-side record with time in [t - before, t + after] matches, "
        "whichever arrives first; as_of: the latest other-side record at or before t, within tolerance.",
    )
    before: Bound = Field(
        0,
        description="interval: how long before this record's time a match may be; or `{field, max}`: the "
        "earliest time a match may have, from a field of each input record.",
    )
    after: Bound = Field(
        0,
        description="interval: how long after this record's time a match may be; or `{field, max}`: the "
        "latest time a match may have, from a field of each input record (e.g. `{field: promised_by, max: "
        "7d}`).",
    )
    tolerance: DurationMs | None = Field(
        None, description="as_of: how old the other-side record may be (unbounded when unset)."
    )
    how: Literal["inner", "left"] = Field(
        "inner",
        description="left: an input record without a match is emitted once its bound has passed "
        "(interval: event time beyond t + after + grace; as_of: at once), with `status_as` = 'unmatched' "
        "and the other side's declared fields (`fields`, else its schema's) null.",
    )
    grace: DurationMs = Field(
        0,
        description="interval: how late (out of order within its own topic) a record of either side may "
        "arrive: one whose side's time is already past its window's end (t + after for the input, t + "
        "before for the other topic) plus grace matches nothing and is dropped as `late_event` (Kafka "
        "Streams' rule); a record waits for the other side's time to pass its bound plus grace. as_of: "
        "how long past its tolerance the other side's record is kept for input records out of order.",
    )
    fields: list[str] | None = Field(
        None,
        description="Other-side fields copied into a match (all when unset); with `fields` or a schema "
        "on the other topic, a declared field the other record lacks is null.",
    )
    prefix: str = Field("", description="Prefix for the copied fields.")
    overwrite: list[str] = Field(
        default_factory=list,
        description="Fields of this side that the other side's copied fields may overwrite in a match "
        "(lint refuses any other collision: set `prefix`, or name the field here).",
    )
    status_as: str = Field(
        "join_status", description="Field set to 'matched' or 'unmatched' on every record the join emits."
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> JoinStep:
        if self.kind == "as_of" and (self.before or self.after):
            raise ValueError("`before`/`after` belong to interval joins; as_of takes `tolerance`")
        if self.kind == "interval" and self.tolerance is not None:
            raise ValueError("`tolerance` belongs to as_of joins; interval takes `before`/`after`")
        return self


StepSpec = Annotated[
    ValidateStep
    | NormalizeStep
    | DeriveStep
    | FilterStep
    | DedupeStep
    | EnrichStep
    | AggregateStep
    | WindowStep
    | ScoreStep
    | MaskStep
    | PythonStep
    | JoinStep
    | ModelStep
    | RepartitionStep,
    Field(discriminator="step"),
]


# --------------------------------------------------------------------------- routes and errors


class RouteTarget(_Model):
    topic: TopicName
    key: str | None = Field(None, description="Field used as the output key (default: the topic's key).")
    set: dict[str, Expression] = Field(
        default_factory=dict, description="Fields computed for this output only (e.g. a constant command)."
    )


# an entry of `to:`, chosen by its shape (models_delivery.route_entry_tag)
RouteEntry = Annotated[
    Annotated[RouteTarget, Tag("target")]
    | Annotated[TopicName, Tag("topic")]
    | Annotated[HttpRoute, Tag("http")]
    | Annotated[PostgresRoute, Tag("postgres")],
    Discriminator(route_entry_tag),
]


class RouteSpec(_Model):
    """One routing rule.

    Rules without ``when`` always fire. Among rules with ``when``, the first that matches
    fires and the rest are skipped. ``otherwise`` fires when no ``when`` rule matched.
    Every output value is projected onto its topic's schema (fields it lacks are left out).
    """

    when: Expression | None = None
    otherwise: bool = False
    to: list[RouteEntry] = Field(
        min_length=1,
        description="One or more topics, or targets outside Kafka such as `{http: {...}}` (fan-out).",
    )

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @model_validator(mode="after")
    def _when_xor_otherwise(self) -> RouteSpec:
        if self.when is not None and self.otherwise:
            raise ValueError("a route has either `when` or `otherwise: true`, not both")
        return self

    def targets(self) -> list[RouteTarget]:
        """The Kafka topics of ``to`` (external targets: ``models_delivery.external_targets``)."""
        return [
            t if isinstance(t, RouteTarget) else RouteTarget(topic=t)
            for t in self.to
            if isinstance(t, str | RouteTarget)
        ]


class RetrySpec(_Model):
    delays: list[DurationMs] = Field(
        min_length=1, description="One delay per retry tier; tier n reads <input>.retry.<n>."
    )
    on: list[str] = Field(
        default_factory=list,
        description="Reasons or exception class names that are retried; validation errors never are.",
    )


class ErrorPolicy(_Model):
    retry: RetrySpec | None = None
    dlq: TopicName | None = Field(None, description="Dead-letter topic (default <input>.dlq).")


class NodeSpec(_Model):
    input: TopicName = Field(description="Topic the node consumes.")
    description: str | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    errors: ErrorPolicy | None = Field(None, description="Retry tiers and DLQ; lint requires one.")
    batch_size: int = Field(2000, ge=1, description="Most records processed per batch.")
    watermarks: Literal["per_source", "per_partition"] = Field(
        "per_source",
        description="For a window, join or sliding aggregate step reading a topic another node of the "
        "topology writes: per_source (the writer tags its outputs with each source partition's event time, "
        "and a partition's watermark is the minimum over the writer's source partitions, so re-keying makes "
        "no on-time record late); per_partition (the greatest event time read on the partition).",
    )


class TopologySpec(_Model):
    topology: Name = Field(description="Name; also the consumer group prefix.")
    version: str = "1"
    description: str | None = None
    constants: dict[str, Any] = Field(
        default_factory=dict, description="Named values that expressions can use (e.g. currency rates)."
    )
    topics: dict[TopicName, TopicSpec]
    tables: dict[Name, TableSpec] = Field(default_factory=dict)
    nodes: dict[Name, NodeSpec]
    allow_cycles: bool = Field(False, description="Allow a node to feed, directly or not, its own input.")
    processing: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description=(
            "Delivery guarantee. at_least_once: a crash can emit a batch's outputs again. exactly_once: "
            "per input partition one Kafka transaction holds a batch's outputs, retries, dead letters, "
            "changelog writes and input offsets; read_committed consumers see each output once."
        ),
    )
    python_paths: list[str] = Field(
        default_factory=list,
        description="Folders, relative to the topology file (an absolute path is used as is), that "
        "`python` steps may load modules from, besides the topology file's own folder. The topology and "
        "these modules are trusted code.",
    )
    python_packages: list[Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")]] = Field(
        default_factory=list,
        description="Installed packages or modules that `python` steps may load wherever they are "
        "installed (e.g. `my_udfs`). Any other module, such as `subprocess`, `os` or `builtins`, is refused.",
    )
    # The folder of the file the topology was read from (the loader sets it; unset: the current
    # folder): python_paths are relative to it, for `validate` and for the worker alike.
    _folder: str | None = PrivateAttr(None)


FieldRule.model_rebuild()
