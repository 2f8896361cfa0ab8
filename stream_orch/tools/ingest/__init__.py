"""``stream-orch ingest``: files (CSV, JSON lines, JSON arrays) into a topic, validated against
the topic's schema, each row published once across re-runs and crashes (a ledger topic).

Modules: :mod:`.readers` (rows of a file, streamed), :mod:`.coerce` (a row in the schema's
types, or why not), :mod:`.ledger` (the ledger records), :mod:`.publish` (one file, chunk by
chunk, each chunk one transaction with its ledger record), :mod:`.watch` (``--watch DIR``).
"""
