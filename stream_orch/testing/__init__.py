"""Testing a topology without a broker: :class:`TopologyTestDriver` runs the worker's own record
path in memory; :mod:`stream_orch.testing.cases` runs a cases file over it (``stream-orch test``)."""

from stream_orch.testing.driver import TopologyTestDriver
from stream_orch.testing.records import OutputRecord

__all__ = ["OutputRecord", "TopologyTestDriver"]
