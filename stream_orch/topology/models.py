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
from stream_orch.topology.models_event_time import JoinStep, WindowStep
from stream_orch.topology.models_expression import Expression
from stream_orch.topology.models_flow import RepartitionStep
from stream_orch.topology.models_governance import AUDIENCE_DESCRIPTION, PII_DESCRIPTION, Audience, PiiPolicy
from stream_orch.topology.models_lookup import LookupManyStep
from stream_orch.topology.models_model import ModelStep
from stream_orch.topology.models_schedule import PunctuateSpec, ScheduleSpec
from stream_orch.topology.models_sliding import AggregateStep
from stream_orch.topology.naming import Name, TopicName, ticks_topic


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    # a step that writes its `table` (split like the node's input, backed by a changelog)
    writes_table: ClassVar[bool] = False


# --------------------------------------------------------------------------- topics


class TopicSpec(_Model):
    partitions: int = Field(
        6, ge=1, description="Partition count; an existing topic must have at least this."
    )
    replication: int | None = Field(
        None,
        ge=1,
        description="Replication factor used when the topic is created; unset: the cluster's "
        "default.replication.factor (1 on `kafka up`, 3 on `kafka up --brokers 3`).",
    )
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
    audience: Audience | None = Field(None, description=AUDIENCE_DESCRIPTION)
    pii: PiiPolicy | None = Field(None, description=PII_DESCRIPTION)


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


StepSpec = Annotated[
    ValidateStep
    | NormalizeStep
    | DeriveStep
    | FilterStep
    | DedupeStep
    | EnrichStep
    | LookupManyStep
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
    # "" only while a scheduled node is validated: TopologySpec sets it to the node's ticks topic
    input: TopicName = Field("", description="Topic the node consumes (or `schedule`).")
    schedule: ScheduleSpec | None = Field(
        None,
        description="Run on a clock instead of reading a topic: at each tick, read the tables of "
        "`schedule.scan` and send their rows through the steps and routes (README \"Schedules and "
        "punctuation\"). A node has `input` or `schedule`.",
    )
    punctuate: PunctuateSpec | None = Field(
        None,
        description="Wall-clock punctuation of a node with `input` and a `window` step: the windows of "
        "an input partition that receives nothing close when the wall clock says so.",
    )
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
    # Set only by topology.shadow.shadow (never read from a file): the node runs in a shadow run,
    # so its retry tiers are shadow topics too (naming.node_retry_topic).
    _shadow: bool = PrivateAttr(False)

    @model_validator(mode="before")
    @classmethod
    def _not_both(cls, data: Any) -> Any:
        # on the data as written: the topology sets a scheduled node's input (its ticks topic)
        if isinstance(data, dict) and data.get("input") is not None and data.get("schedule") is not None:
            raise ValueError(
                "a node has `input` (the topic it reads) or `schedule` (when it runs), not both"
            )
        return data

    @model_validator(mode="after")
    def _input_or_schedule(self) -> NodeSpec:
        if self.schedule is None and not self.input:
            raise ValueError("a node needs `input` (the topic it reads) or `schedule` (when it runs)")
        return self


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

    @model_validator(mode="after")
    def _scheduled_inputs(self) -> TopologySpec:
        # a scheduled node reads its ticks topic (the engine creates it: schedule_expand)
        for name, node in self.nodes.items():
            if node.schedule is not None and not node.input:
                node.input = ticks_topic(self.topology, name)
        return self


FieldRule.model_rebuild()
