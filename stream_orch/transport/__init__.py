"""Kafka client helpers that the runtime, the state stores, the reliability commands and the tools
share: building and starting clients, waiting for topic metadata, and reading partitions to their
end. They know nothing of topologies."""
