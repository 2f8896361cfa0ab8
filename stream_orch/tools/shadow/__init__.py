"""Shadow runs and backtests: where a shadow run starts (``lifecycle``), what it is compared on
(``plan``), the report (``report`` reads both versions' topics, ``compare`` joins and counts)."""
