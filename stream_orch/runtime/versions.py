"""The versions of a topology a worker ran, and what identifies one: its content hash.

A version is the topology file's text and the files it makes the worker read: the Avro schemas
of its topics, the modules of its python steps and its model files. Its content hash covers all
of them, so two workers agree on a version only if they would run the same thing.

:class:`VersionStore` keeps every version a worker ran under
``<state>/<topology>/versions/<version>.yaml`` (the file's text, as written: secrets stay
``${VARIABLES}``) with ``<version>.json`` (its content hash and each file's hash), for
``stream-orch reload --to-version``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_orch.topology.content import content_hash, read_files
from stream_orch.topology.loader import LoadedTopology
from stream_orch.topology.models import TopologySpec

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class TopologyVersion:
    """One version of a topology as loaded: the spec, the file's text and the other files' hashes."""

    loaded: LoadedTopology
    text: str
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, loaded: LoadedTopology, text: str, schema_dir: Path) -> TopologyVersion:
        return cls(loaded, text, read_files(loaded.spec, schema_dir))

    @property
    def spec(self) -> TopologySpec:
        return self.loaded.spec

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def content_hash(self) -> str:
        """What identifies this version (:func:`stream_orch.topology.content.content_hash`)."""
        return content_hash(self.text, self.files)

    def changed_files(self, other: TopologyVersion) -> list[str]:
        """The files read by one of the two versions whose content differs (or that only one reads)."""
        return sorted(p for p in {*self.files, *other.files} if self.files.get(p) != other.files.get(p))


def version_file_stem(version: str) -> str:
    """``version`` as a file name: itself when it is a plain name, else a hex form (never a path)."""
    return version if _SAFE.fullmatch(version) else "x-" + version.encode().hex()[:200]


class VersionStore:
    """Every version of one topology this worker ran, in ``<state>/<topology>/versions``."""

    def __init__(self, state_dir: Path, topology: str) -> None:
        self.folder = state_dir / topology / "versions"

    def keep(self, version: TopologyVersion) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = version_file_stem(version.version)
        meta = {"version": version.version, "content_hash": version.content_hash, "files": version.files}
        meta_path = self.folder / f"{stem}.json"
        if meta_path.exists():
            kept = json.loads(meta_path.read_text())
            if kept.get("content_hash") == version.content_hash:
                return
            log.warning(
                "version %s of %s is kept with another content (hash %s, now %s); keeping the new one",
                version.version,
                version.spec.topology,
                kept.get("content_hash"),
                version.content_hash,
            )
        for path, data in (
            (self.folder / f"{stem}.yaml", version.text),
            (meta_path, json.dumps(meta, indent=1)),
        ):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(data)
            os.replace(tmp, path)  # a reader never sees half a file

    def get(self, version: str) -> tuple[str, dict[str, Any]] | None:
        """The kept text of ``version`` and its metadata (content hash, files), or None."""
        stem = version_file_stem(version)
        text_path, meta_path = self.folder / f"{stem}.yaml", self.folder / f"{stem}.json"
        try:
            return text_path.read_text(), json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None

    def versions(self) -> list[str]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(str(json.loads(path.read_text())["version"]))
            except (OSError, ValueError, KeyError):
                continue
        return found
