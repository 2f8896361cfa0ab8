"""stream-orch: declarative Kafka stream processing for Python."""

__version__ = "0.1.0"
