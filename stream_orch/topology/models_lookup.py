"""The ``lookup_many`` step's model (imported by :mod:`stream_orch.topology.models`, whose rules it
follows): a list field of the record, one table lookup per element, and the elements whose row
was found (and kept) into a field, e.g. a product's substitutes that the same store has in stock."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_orch.topology.models_expression import Expression
from stream_orch.topology.naming import Name

#: the name the `key` expression reads the list's element by
ITEM = "item"


class LookupManyStep(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    step: Literal["lookup_many"]
    writes_table: ClassVar[bool] = False
    table: Name = Field(description="Table to look up (a table fed by a topic; global, or read whole).")
    each: str = Field(description="List field of the record: one lookup per element.")
    key: Expression = Field(
        description="The key looked up for an element, an expression over the record's fields and "
        "`item` (the element), e.g. `store_id + ':' + item`."
    )
    keep: Expression | None = Field(
        None,
        description="An expression over the found row's fields: the element is kept when it holds (e.g. "
        "`level > 0`); unset: every element with a row. An element without a row is left out.",
    )
    as_: str = Field(
        alias="as", description="Field that receives the elements kept, in the list's order (a list)."
    )
