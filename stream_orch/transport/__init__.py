"""Kafka client helpers that the runtime, the state stores and the tools share: waiting for topic
metadata, and reading partitions to their end. They know nothing of topologies."""
