"""Who may read a topic and which personal data it may carry (the fields of
:class:`stream_orch.topology.models.TopicSpec` that the PII lint and the catalog read; pydantic
models are the single source of truth of validation, JSON Schema and the reference docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

#: who reads a topic, a free label shown in the catalog; `analysts` restricts its PII
Audience = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
PiiPolicy = Literal["allowed", "pseudonymised", "forbidden"]

AUDIENCE_DESCRIPTION = (
    "Who reads the topic (a label such as `analysts`, shown in the catalog). `audience: analysts` makes "
    "`pii` default to `pseudonymised`."
)
PII_DESCRIPTION = (
    'Which personal data (schema fields with `"pii": "direct"` or `"indirect"`) may reach the topic; lint '
    "follows every field through steps, routes and nodes and names the line where one gets through. "
    "allowed: any; pseudonymised: no direct field unless a `mask` step hashes it (a digest is indirect) or "
    "drops it; forbidden: none at all (drop them). Default: pseudonymised for `audience: analysts`, else "
    "allowed."
)


def pii_policy(audience: str | None, pii: PiiPolicy | None) -> PiiPolicy:
    """The policy a topic follows: ``pii`` as written, else what its audience implies."""
    if pii is not None:
        return pii
    return "pseudonymised" if audience == "analysts" else "allowed"
