"""The worker's start-up lines say what a table fed by a topic is (global or not)."""

from __future__ import annotations

from stream_orch.runtime.topic_plans import table_label, table_loaded_message
from stream_orch.topology.models import TopologySpec


def _spec() -> TopologySpec:
    return TopologySpec.model_validate(
        {
            "topology": "t",
            "topics": {"customers": {"partitions": 3}, "hubs": {"partitions": 3}, "a": {"partitions": 3}},
            "tables": {"customers": {"topic": "customers", "global": True}, "hubs": {"topic": "hubs"}},
            "nodes": {"n": {"input": "a", "routes": [{"to": "a"}]}},
        }
    )


def test_a_table_without_global_true_is_not_called_global() -> None:
    spec = _spec()
    message = table_loaded_message(spec, "hubs", 3, 7)
    assert message == "table hubs loaded from all 3 partitions of hubs: 7 rows"
    assert table_label(spec, "hubs") == "table hubs"


def test_a_global_table_is_called_global() -> None:
    spec = _spec()
    assert (
        table_loaded_message(spec, "customers", 3, 2)
        == "global table customers loaded from all 3 partitions of customers: 2 rows"
    )
    assert table_label(spec, "customers") == "global table customers"
