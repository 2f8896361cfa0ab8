"""The rejects file: one ``file:line: reason`` per rejected row.

By default beside each input (``<input>.rejects``); ``--rejects FILE`` collects every input's
rejects in one file. A run that reads a file rewrites its rejects for the whole file (a resumed
run re-validates the committed part), so the file always matches the input; a default rejects
file left by an earlier run is removed when the new run rejects nothing. A file the ledger
says is done is not read, and its rejects file is left as it is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TextIO

SUFFIX = ".rejects"


def default_rejects(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


class Rejects:
    def __init__(self, explicit: Path | None = None) -> None:
        self.explicit = explicit
        self._open: dict[Path, TextIO] = {}
        self.count = 0
        self._started: set[Path] = set()

    def target(self, path: Path) -> Path:
        return self.explicit or default_rejects(path)

    def start(self, path: Path) -> None:
        """A new run over ``path``: its default rejects file is rewritten from scratch."""
        if self.explicit is None:
            self.close_for(path)
            with contextlib.suppress(FileNotFoundError):
                default_rejects(path).unlink()

    def add(self, path: Path, line: int, reason: str) -> None:
        target = self.target(path)
        stream = self._open.get(target)
        if stream is None:
            stream = self._open[target] = target.open("w", encoding="utf-8", errors="backslashreplace")
        reason = reason.replace("\n", "\\n").replace("\r", "\\r")
        stream.write(f"{path}:{line}: {reason}\n")
        self.count += 1

    def close_for(self, path: Path) -> None:
        stream = self._open.pop(self.target(path), None) if self.explicit is None else None
        if stream is not None:
            stream.close()

    def close(self) -> None:
        for stream in self._open.values():
            stream.close()
        self._open.clear()
