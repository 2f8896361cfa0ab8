"""``stream-orch forget``: erase one data subject's entries from a topology's tables
(``plan.py``: which tables and which of their keys, pure; ``erase.py``: reading, tombstoning and
the guard on running workers)."""
