"""One ``/metrics`` for the member processes of ``stream-orch run --processes N``.

Each member keeps its own prometheus registry and HTTP port; the supervisor scrapes them and
serves their samples under one family each, every sample labelled ``process="<i>"``. Labelling
rather than summing keeps every member's figures (a sum over ``process`` in PromQL gives the
total) and needs no shared files, unlike prometheus-client's multiprocess mode, which would
have to reach into every metric the workers define.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


class _Families:
    """A collector that yields families it was given (the merged ones)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge(texts: Mapping[str, str], label: str = "process") -> list[Metric]:
    """The families of every member's exposition ``texts`` (member name -> text), merged by family
    name, each sample labelled ``label=<member>``. A member's text that does not parse is skipped
    (the caller reports it as down); a family is typed by its first member."""
    merged: dict[str, Metric] = {}
    for member, text in texts.items():
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:
            continue
        for family in families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            into.samples += [
                Sample(s.name, {**s.labels, label: member}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
    return list(merged.values())


def render(families: list[Metric], *extra: CollectorRegistry) -> bytes:
    """The text exposition of ``families`` followed by the ``extra`` registries' own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry) + b"".join(generate_latest(r) for r in extra)
