"""Changelog-backed tables: local (per input partition) and global."""
