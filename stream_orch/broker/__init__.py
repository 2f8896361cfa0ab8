"""The embedded single-node Apache Kafka broker behind ``stream-orch kafka``.

Jars come from Maven Central through ``pom.xml``; nothing here needs Docker.
"""

from stream_orch.broker.layout import BrokerLayout
from stream_orch.broker.manager import BrokerManager, BrokerStatus

__all__ = ["BrokerLayout", "BrokerManager", "BrokerStatus"]
