"""The topology spec: pydantic models (the single source of truth), loading, lint and drawing.

Nothing in this package knows about Kafka clients or the runtime.
"""
