"""Rows of a file, streamed with bounded memory: ``(line, record)`` where ``line`` is the
physical line (1-based) the row starts on and ``record`` a dict, or a :class:`BadRow` saying
why the row is not one.

* CSV: the :mod:`csv` module over a text stream (``utf-8-sig``: a BOM is dropped; CRLF, LF and
  quoted newlines as the module reads them). The first non-empty row is the header
  (:attr:`Reader.header`); a row is the list of its cells, as many as the header has (strings:
  :mod:`.coerce` turns them into the schema's types, by column). Empty lines are skipped.
* JSON lines: one object per line, read as bytes a line at a time (at most MAX_ROW_BYTES).
* JSON: one top-level array of objects, parsed element by element with the standard decoder's
  ``raw_decode`` over a sliding text buffer (no library: ~40 lines, and the C scanner does the
  work). A row names its line and its element index.

Invalid UTF-8 does not stop a file: text is decoded with ``surrogateescape`` and the row that
holds the bad bytes is rejected when it is encoded.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

FORMATS = ("csv", "jsonl", "json")
MAX_ROW_BYTES = 16 * 1024 * 1024  # a longer row is rejected (and skipped), never held whole
READ_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"

csv.field_size_limit(MAX_ROW_BYTES)


@dataclass(frozen=True, slots=True)
class BadRow:
    reason: str


Row = tuple[int, "dict[str, Any] | list[str] | BadRow"]


class Reader:
    """The rows of one file; :attr:`position` is how many bytes were read (for the ETA)."""

    def __init__(self, path: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.path = path
        self.format = fmt
        self._raw: BinaryIO | None = None
        self.header: list[str] = []  # CSV: the column names, once the header row is read

    @property
    def position(self) -> int:
        try:
            return self._raw.tell() if self._raw is not None else 0
        except (OSError, ValueError):
            return 0

    def rows(self) -> Iterator[Row]:
        with self.path.open("rb") as raw:
            self._raw = raw
            if self.format == "jsonl":
                yield from _jsonl_rows(raw)
                return
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
            yield from (_csv_rows(text, self.header) if self.format == "csv" else _json_rows(text))


def _csv_rows(text: io.TextIOWrapper, header: list[str]) -> Iterator[Row]:
    """The rows as lists of cells; the header row's names go into ``header``."""
    reader = csv.reader(text)
    consumed = 0  # physical lines read before the current row
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the size limit: that row only
            line, consumed = consumed + 1, reader.line_num
            yield line, BadRow(f"not valid CSV: {exc}")
            continue
        line, consumed = consumed + 1, reader.line_num
        if not cells or cells == [""]:
            continue
        if not header:
            header += [c.strip() for c in cells]
            continue
        if len(cells) != len(header):
            yield line, BadRow(f"expected {len(header)} fields as in the header, got {len(cells)}")
            continue
        yield line, cells


def _jsonl_rows(raw: BinaryIO) -> Iterator[Row]:
    line = 0
    while chunk := raw.readline(MAX_ROW_BYTES):
        line += 1
        if not chunk.endswith(b"\n") and len(chunk) >= MAX_ROW_BYTES:
            while (more := raw.readline(MAX_ROW_BYTES)) and not more.endswith(b"\n"):
                pass  # skip the rest of the over-long line
            yield line, BadRow(f"line longer than {MAX_ROW_BYTES} bytes")
            continue
        if line == 1 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            record = orjson.loads(chunk)
        except orjson.JSONDecodeError as exc:
            yield line, BadRow(f"not valid JSON: {exc}")
            continue
        yield line, record if isinstance(record, dict) else BadRow(_not_object(record))


def _not_object(value: Any) -> str:
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    return f"expected a JSON object, got {kind}"


_WS = " \t\r\n"


class _Buffer:
    """A sliding window over a text stream, with the line number of its read position."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self.text = text
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.text.read(READ_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def skip_ws(self) -> str:
        """The next non-blank character (not consumed), or "" at the end."""
        while True:
            end = self.pos
            while end < len(self.buf) and self.buf[end] in _WS:
                end += 1
            self.advance(end)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""


def _json_rows(text: io.TextIOWrapper) -> Iterator[Row]:
    src = _Buffer(text)
    decoder = json.JSONDecoder()
    if src.skip_ws() != "[":
        yield src.line, BadRow("not a JSON array: the file must hold one top-level [ ... ]")
        return
    src.advance(src.pos + 1)
    index = 0
    while True:
        char = src.skip_ws()
        if char == "]" and index == 0:
            return
        line = src.line
        try:
            value, end = decoder.raw_decode(src.buf, src.pos)
            complete = end < len(src.buf) or src.eof  # a number cut by the buffer's end looks whole
        except json.JSONDecodeError as exc:
            if len(src.buf) - src.pos < MAX_ROW_BYTES and src.more():
                continue
            yield (
                line,
                BadRow(f"element {index}: not valid JSON ({exc.msg}); the rest of the file is not read"),
            )
            return
        if not complete:
            src.more()
            continue
        src.advance(end)
        yield line, value if isinstance(value, dict) else BadRow(f"element {index}: {_not_object(value)}")
        index += 1
        char = src.skip_ws()
        if char == ",":
            src.advance(src.pos + 1)
        elif char == "]":
            return
        else:
            found = "the end of the file" if not char else repr(char)
            yield src.line, BadRow(f"after element {index - 1}: expected , or ] but found {found}")
            return
