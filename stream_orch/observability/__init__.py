"""Metrics, consumer lag (records and seconds), Burrow-style status, /health and /ready, JSON logs."""
