"""CSV files for ``stream-orch ingest``: the benchmark's and the integration tests' input, with
the reference a run must match (the bad rows with their reasons, the good rows' values).

Row ``i`` (0-based) is bad when ``i % bad_every == bad_every - 1`` (1 % by default), in five
ways in turn; every 7th row's note is quoted with a comma and a line break, so physical lines
and row numbers part ways, as they do in real exports.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ingest_payment",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP"]}},
        {"name": "flagged", "type": "boolean"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
HEADER = "id,account,amount,currency,flagged,note"
CURRENCIES = ("EUR", "USD", "GBP")


@dataclass
class Reference:
    """What ingesting the file must give: the rejects (line, reason), the good values."""

    rows: int = 0
    bad_every: int = 100
    rejects: list[tuple[int, str]] = field(default_factory=list)
    good: int = 0
    checksum: int = 0  # sum of crc32(value) over the good rows, mod 2**64

    def good_ids(self, start: int = 0) -> set[int]:
        """The ids of the good rows of a file written with ``start``."""
        bad = {
            i
            for i in range(start, start + self.rows)
            if self.bad_every and i % self.bad_every == self.bad_every - 1
        }
        return set(range(start, start + self.rows)) - bad

    def add_good(self, value: bytes) -> None:
        self.good += 1
        self.checksum = (self.checksum + zlib.crc32(value)) % 2**64


def value_checksum(values: Iterator[bytes]) -> tuple[int, int]:
    """(count, checksum) of record values, as :class:`Reference` computes them."""
    count = total = 0
    for value in values:
        count += 1
        total = (total + zlib.crc32(value)) % 2**64
    return count, total


def _good(i: int) -> tuple[str, dict[str, Any]]:
    amount = (i * 37 % 100_000) / 100
    currency = CURRENCIES[i % 3]
    flagged = i % 11 == 0
    note: str | None = None
    cell = ""
    if i % 7 == 0:
        note = f"paid, ref {i}\nsecond line"
        cell = f'"{note}"'
    elif i % 5 == 0:
        note = f"n{i}"
        cell = note
    text = f"{i},acct-{i % 9973},{amount},{currency},{'true' if flagged else 'false'},{cell}"
    value = {"id": i, "account": f"acct-{i % 9973}", "amount": float(amount), "currency": currency}
    value |= {"flagged": flagged, "note": note}
    return text, value


def _bad(i: int) -> tuple[str, str]:
    kind = (i // 100) % 5
    if kind == 0:
        return f"x{i},acct,1.0,EUR,true,", f"field 'id': expected long, got str 'x{i}'"
    if kind == 1:
        return f"{i},acct,1.0,JPY,true,", "field 'currency': expected one of EUR, USD, GBP, got str 'JPY'"
    if kind == 2:
        return f"{i},acct,,EUR,true,", "field 'amount': expected double, got empty"
    if kind == 3:
        return f"{i},acct,1.0,EUR", "expected 6 fields as in the header, got 4"
    return f"{i},acct,1.0,EUR,maybe,", "field 'flagged': expected boolean, got str 'maybe'"


def write_csv(path: Path, rows: int, *, bad_every: int = 100, start: int = 0) -> Reference:
    """Write ``rows`` rows (ids from ``start``) to ``path``; returns the reference."""
    ref = Reference(rows=rows, bad_every=bad_every)
    line = 1
    out: list[str] = [HEADER]
    with path.open("w", encoding="utf-8", newline="") as f:
        for i in range(start, start + rows):
            line += 1
            if bad_every and i % bad_every == bad_every - 1:
                text, reason = _bad(i)
                ref.rejects.append((line, reason))
            else:
                text, value = _good(i)
                ref.add_good(orjson.dumps(value))
            out.append(text)
            line += text.count("\n")
            if len(out) >= 10_000:
                f.write("\r\n".join(out) + "\r\n")
                out.clear()
        f.write("\r\n".join(out) + ("\r\n" if out else ""))
    return ref
