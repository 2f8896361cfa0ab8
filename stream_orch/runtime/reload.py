"""Rule reload without restart, and rollback.

A reload (SIGHUP, ``stream-orch reload PID``, ``POST /admin/reload``, or another worker's
announcement) reads the topology file again, or a version this worker kept, checks it as
``stream-orch validate`` does and with ``reload_problems``, and either hands it to every node,
which swaps its steps and routes at its next batch boundary, or refuses it with one line at
WARNING and keeps the running version. Consumers, offsets, transactions and tables are never
touched: the batch in flight ends on the old version, the next one runs (and stamps
``so.version`` with) the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stream_orch.errors import UserError
from stream_orch.runtime.announce import REFUSED, RELOADED, Announcer
from stream_orch.runtime.versions import TopologyVersion, VersionStore
from stream_orch.topology.lint import has_errors, lint
from stream_orch.topology.loader import SpecError, parse_topology, read_topology_text
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.reloadable import reload_problems

log = logging.getLogger(__name__)

Result = Literal["applied", "refused", "unchanged"]
APPLY_TIMEOUT_S = 120.0  # a node swaps at its next batch boundary: one batch, or a restore


class Refused(Exception):
    """A reload that is not applied; the message is its one-line reason."""


@dataclass
class ReloadResult:
    result: Result
    version: str  # the version running after it
    content_hash: str
    trigger: str
    reason: str = ""
    requested: str = ""  # the version asked for (rollback), or the file's
    at: float = 0.0
    previous: str = ""  # the version running before an applied reload

    def line(self) -> str:
        if self.result == "refused":
            return f"reload refused ({self.trigger}): {self.reason}; still running version {self.version}"
        if self.result == "unchanged":
            return f"reload ({self.trigger}): version {self.version} ({self.content_hash}) is already running"
        return f"reload applied ({self.trigger}): now running version {self.version} ({self.content_hash})"


Apply = Callable[[TopologySpec], Awaitable[None]]


class Reloader:
    """The running version of one worker's topology, and the reloads that change it."""

    def __init__(
        self,
        running: TopologyVersion,
        file: Path,
        schema_dir: Path,
        store: VersionStore,
        apply: Apply,
        *,
        announcer: Announcer | None = None,
        counted: Callable[[Result], None] | None = None,
    ) -> None:
        self.running = running
        self.file = file
        self.schema_dir = schema_dir
        self.store = store
        self._apply = apply
        self._announcer = announcer
        self._counted = counted or (lambda result: None)
        self.last: ReloadResult | None = None
        self._lock = asyncio.Lock()
        self._keep(running)

    def status(self) -> dict[str, Any]:
        """What /status shows: the running version and the last reload's result."""
        return {
            "topology": self.running.spec.topology,
            "version": self.running.version,
            "content_hash": self.running.content_hash,
            "kept_versions": self.store.versions(),
            "last_reload": asdict(self.last) if self.last else None,
        }

    async def reload(self, trigger: str, to_version: str | None = None) -> ReloadResult:
        """Read the file (or the kept ``to_version``), check it and apply it or refuse it."""
        async with self._lock:
            try:
                candidate = self._kept(to_version) if to_version is not None else self._from_file()
                result = await self._try(candidate, trigger)
            except Refused as exc:
                result = self._result("refused", trigger, str(exc), to_version or "")
            await self._finish(result)
            return result

    async def heard(self, version: str, content_hash: str) -> None:
        """Another worker of the topology applied ``version`` (``content_hash``): take it when this
        worker's file, or its kept copy of that version, is the same content; else keep running."""
        async with self._lock:
            if content_hash == self.running.content_hash:
                return
            candidates = []
            with contextlib.suppress(Refused):
                candidates.append(self._from_file())
            if self.store.get(version) is not None:
                with contextlib.suppress(Refused):
                    candidates.append(self._kept(version))
            same = [c for c in candidates if c.version == version and c.content_hash == content_hash]
            if not same:
                log.info(
                    "reload: another worker runs version %s (%s); this worker's file is not that "
                    "content, so it keeps version %s (%s)",
                    version,
                    content_hash,
                    self.running.version,
                    self.running.content_hash,
                )
                return
            try:
                result = await self._try(same[0], "announced")
            except Refused as exc:
                result = self._result("refused", "announced", str(exc), version)
            await self._finish(result)

    # ------------------------------------------------------------------ candidates

    def _check(self, text: str, path: Path) -> TopologyVersion:
        try:
            loaded = parse_topology(text, path)
        except SpecError as exc:
            raise Refused(_first(exc.problems)) from None
        except UserError as exc:
            raise Refused(str(exc)) from None
        try:
            problems = lint(loaded, self.schema_dir)  # what `stream-orch validate` checks
        except UserError as exc:
            raise Refused(str(exc)) from None
        if has_errors(problems):
            raise Refused(_first([p for p in problems if p.severity == "error"]))
        return TopologyVersion.of(loaded, text, self.schema_dir)

    def _from_file(self) -> TopologyVersion:
        try:
            text = read_topology_text(self.file)
        except UserError as exc:
            raise Refused(str(exc)) from None
        return self._check(text, self.file)

    def _kept(self, version: str) -> TopologyVersion:
        kept = self.store.get(version)
        if kept is None:
            known = ", ".join(self.store.versions()) or "none"
            raise Refused(f"no kept version {version!r} in {self.store.folder} (kept: {known})")
        text, meta = kept
        # parsed as if it were the file: its python steps and model files resolve from there
        candidate = self._check(text, self.file)
        kept_files = meta.get("files") or {}
        if candidate.files != kept_files:
            changed = sorted(
                p for p in {*candidate.files, *kept_files} if candidate.files.get(p) != kept_files.get(p)
            )
            raise Refused(f"version {version} ran with other files than there are now: {', '.join(changed)}")
        return candidate

    # ------------------------------------------------------------------ applying

    async def _try(self, candidate: TopologyVersion, trigger: str) -> ReloadResult:
        running = self.running
        if candidate.content_hash == running.content_hash:
            return self._result("unchanged", trigger, requested=candidate.version)
        problems = reload_problems(running.spec, candidate.spec)
        problems += [f"{path}: changed (needs a restart)" for path in candidate.changed_files(running)]
        if not problems and candidate.version == running.version:
            problems.append(
                f"version: still {running.version!r} but the content changed: give it a new version"
            )
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise Refused(f"{candidate.loaded.file}: {problems[0]}{more}")
        previous = running.version
        await self._apply(candidate.spec)
        self.running = candidate
        self._keep(candidate)
        result = self._result("applied", trigger, requested=candidate.version)
        result.previous = previous
        return result

    def _keep(self, version: TopologyVersion) -> None:
        try:
            self.store.keep(version)
        except OSError as exc:  # the worker runs on; only a rollback to this version is lost
            log.warning(
                "cannot keep version %s in %s (%s): no rollback to it",
                version.version,
                self.store.folder,
                exc,
            )

    def _result(self, result: Result, trigger: str, reason: str = "", requested: str = "") -> ReloadResult:
        running = self.running
        return ReloadResult(
            result, running.version, running.content_hash, trigger, reason, requested, time.time()
        )

    async def _finish(self, result: ReloadResult) -> None:
        self.last = result
        self._counted(result.result)
        log.log(logging.WARNING if result.result == "refused" else logging.INFO, result.line())
        await self._announce(result)

    async def _announce(self, result: ReloadResult) -> None:
        """An applied reload (the others converge on it) and a refused one (for the audit trail);
        not one taken from an announcement, nor one that changed nothing."""
        if self._announcer is None or result.trigger == "announced" or result.result == "unchanged":
            return
        applied = result.result == "applied"
        details = {"trigger": result.trigger, "requested": result.requested}
        details.update({"from_version": result.previous} if applied else {"reason": result.reason})
        try:
            await self._announcer.announce(
                RELOADED if applied else REFUSED,
                self.running.spec.topology,
                result.version,
                result.content_hash,
                details,
            )
        except Exception as exc:  # the reload stands; the other workers get the next one
            log.warning("reload: writing to the audit topic failed: %r", exc)


def _first(problems: list[Any]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}" if problems else "invalid topology"
