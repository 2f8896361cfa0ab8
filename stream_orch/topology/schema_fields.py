"""The schemas a topology refers to, as lint reads them, and the did-you-mean hint."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class SchemaFields:
    """Top-level field names of ``<dir>/<name>.avsc``.

    Uses the codecs' :class:`SchemaRegistry` (each schema parsed once) when the directory
    is valid, else reads the JSON of each file on its own so one bad file does not hide the
    others.
    """

    def __init__(self, directory: str | Path, error: str | None = None) -> None:
        self.directory = Path(directory)
        self.error: str | None = error
        self._registry: Any = None
        if error is not None:
            return
        if not self.directory.is_dir():
            self.error = f"schema directory {self.directory} does not exist"
            return
        try:
            from stream_orch.codecs.schemas import SchemaRegistry
        except ImportError:  # pragma: no cover - codecs is part of the package
            return
        try:
            self._registry = SchemaRegistry(self.directory)
        except Exception:  # a bad file: fall back to reading files one by one, below
            self._registry = None

    def exists(self, name: str) -> bool:
        if self._registry is not None:
            return name in self._registry
        return (self.directory / f"{name}.avsc").is_file()

    def fields(self, name: str) -> list[str] | None:
        """Field names, or None when the schema is missing or unreadable."""
        if self._registry is not None:
            return self._registry.field_names(name) if name in self._registry else None
        try:
            raw = json.loads((self.directory / f"{name}.avsc").read_text(encoding="utf-8"))
            return [f["name"] for f in raw["fields"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def definitions(self, name: str) -> dict[str, Any] | None:
        """The record schema as written in its file, or None when missing or unreadable."""
        if self._registry is not None:
            return self._registry.raw(name) if name in self._registry else None
        try:
            raw = json.loads((self.directory / f"{name}.avsc").read_text(encoding="utf-8"))
            return raw if isinstance(raw, dict) and isinstance(raw.get("fields"), list) else None
        except (OSError, ValueError):
            return None

    def problem(self, name: str) -> str | None:
        """Why a schema cannot be used (None when it can)."""
        if self.error:
            return self.error
        if not self.exists(name):
            return f"unknown schema `{name}`: no {name}.avsc in {self.directory.absolute()}"
        if self.fields(name) is None:
            return f"schema `{name}` ({self.directory / (name + '.avsc')}) is not a readable Avro record"
        return None


def suggest(name: str, known: Iterable[str], what: str) -> str:
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if name in ("true", "false", "null", "none"):
        return "write True, False or None (Python spelling) in expressions"
    if not known:
        return f"no {what} is declared"
    shown = ", ".join(known[:15]) + (", ..." if len(known) > 15 else "")
    return f"known {what}: {shown}"
