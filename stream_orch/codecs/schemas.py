"""The Avro schemas in ``schemas/*.avsc``: the one definition of each record type.

Each file is read and parsed with :func:`fastavro.parse_schema` once, when the registry is
built. The schema's name in a topology (``schema: transaction``) is the file's stem
(``schemas/transaction.avsc``). Every file is parsed on its own, so named types (enums,
records) only need to be unique within one file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import fastavro
import orjson

#: ``schemas/`` at the root of the repository (next to the ``stream_orch`` package).
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


class SchemaError(Exception):
    """A schema file is missing, is not valid JSON or Avro, or a schema name is unknown."""


class SchemaRegistry:
    """Every ``*.avsc`` of one directory, parsed once.

    >>> reg = SchemaRegistry("schemas")
    >>> reg.field_names("transaction")[:2]
    ['txn_id', 'account_id']
    """

    def __init__(self, directory: str | Path = DEFAULT_SCHEMA_DIR) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SchemaError(f"schema directory {self.directory} does not exist")
        self._raw: dict[str, dict[str, Any]] = {}
        self._parsed: dict[str, dict[str, Any]] = {}
        self._plain: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, Any] = {}
        for path in sorted(self.directory.glob("*.avsc")):
            self._load(path)

    def _load(self, path: Path) -> None:
        name = path.stem
        try:
            raw = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise SchemaError(f"{path}: the top-level schema must be an Avro record")
        try:
            parsed = fastavro.parse_schema(copy.deepcopy(raw))
            plain = fastavro.parse_schema(_without_logical_types(raw))
        except Exception as exc:  # fastavro raises SchemaParseException, ValueError, ...
            raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from None
        self._raw[name] = raw
        self._parsed[name] = parsed
        self._plain[name] = plain

    # ------------------------------------------------------------------ lookups

    def __contains__(self, name: object) -> bool:
        return name in self._parsed

    def names(self) -> list[str]:
        """Schema names (file stems), sorted."""
        return sorted(self._parsed)

    def get(self, name: str) -> dict[str, Any]:
        """The parsed schema (as returned by ``fastavro.parse_schema``)."""
        try:
            return self._parsed[name]
        except KeyError:
            raise SchemaError(self._unknown(name)) from None

    def plain(self, name: str) -> dict[str, Any]:
        """The parsed schema without ``logicalType`` annotations.

        The Avro codec writes and reads with it, so a ``timestamp-millis`` field stays an int
        of epoch milliseconds in the record dict instead of becoming a ``datetime``.
        """
        try:
            return self._plain[name]
        except KeyError:
            raise SchemaError(self._unknown(name)) from None

    def raw(self, name: str) -> dict[str, Any]:
        """The schema as written in the file (JSON), e.g. for documentation."""
        try:
            return self._raw[name]
        except KeyError:
            raise SchemaError(self._unknown(name)) from None

    def raw_or_none(self, name: str) -> dict[str, Any] | None:
        """:meth:`raw`, or None for a name the folder lacks (a lookup that does not raise)."""
        return self._raw.get(name)

    def path(self, name: str) -> Path:
        self.get(name)
        return self.directory / f"{name}.avsc"

    def fields(self, name: str) -> list[dict[str, Any]]:
        """The record's field definitions (``name``, ``type``, ``doc``, ``default``), as in the file."""
        return self.raw(name)["fields"]

    def field_names(self, name: str) -> list[str]:
        return [f["name"] for f in self.raw(name)["fields"]]

    def validator(self, name: str):
        """The :class:`~stream_orch.codecs.validation.Validator` of the schema, built once."""
        validator = self._validators.get(name)
        if validator is None:
            from stream_orch.codecs.validation import Validator

            validator = self._validators[name] = Validator(self.get(name))
        return validator

    def _unknown(self, name: str) -> str:
        known = ", ".join(self.names()) or "none"
        return f"unknown schema {name!r}: no {name}.avsc in {self.directory} (known: {known})"


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(s) for s in schema]
    return schema
