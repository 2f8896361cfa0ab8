"""Retry tiers, dead-letter records, and the tools to inspect and replay them."""
