"""Steps that change how records flow rather than what they hold: ``repartition`` (imported by
:mod:`stream_orch.topology.models`, whose rules they follow: pydantic models are the single
source of truth of validation, JSON Schema and the reference docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RepartitionStep(_Model):
    """Re-key the records by a field, so that the steps after it (a window, aggregate, join or
    dedupe keyed by that field) see all of a key's records in one partition."""

    step: Literal["repartition"]
    by: str = Field(
        description="Field that keys the records after this step. They continue on the internal topic "
        "`<topology>.<node>.repartition` (JSON of the record's fields at this point, keyed by this field), "
        "read by the node's second part `<node>.after_repartition` with the remaining steps, the routes and "
        "the error policy (its failures go to the node's DLQ). Its windows take their watermark as the "
        "minimum over the node's input partitions (`watermarks: per_source`)."
    )
    partitions: int | None = Field(
        None, ge=1, description="Partitions of the internal topic (default: the node input's)."
    )
