"""What identifies a version of a topology: its content hash.

A version is the topology file's text and the files it makes a worker read: the Avro schemas of
its topics and validate steps, the modules of its python steps and its model files. The hash
covers all of them (files by what names them, not where they live), so two workers, the audit
trail and `stream-orch reload` agree on a version only if it would run the same thing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from stream_orch.topology.model_files import model_file
from stream_orch.topology.models import ModelStep, PythonStep, TopologySpec, ValidateStep
from stream_orch.topology.python_modules import PythonPlaces

HASH_CHARS = 16  # of the SHA-256's hex digest: enough to tell versions apart, short enough to read


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_files(spec: TopologySpec, schema_dir: Path) -> dict[str, str]:
    """Each file the topology makes a worker read besides itself, by what names it (``schema
    transaction``, ``module checks``, ``model models/fraud.onnx``), to its sha256: where the
    files live may differ between workers, their content may not."""
    named: dict[str, list[Path]] = {}
    for topic in spec.topics.values():
        if topic.schema_:
            named[f"schema {topic.schema_}"] = [schema_dir / f"{topic.schema_}.avsc"]
    places = PythonPlaces.of(spec)
    for node in spec.nodes.values():
        for step in node.steps:
            if isinstance(step, PythonStep):
                module = step.function.partition(":")[0]
                named[f"module {module}"] = places.files(module)
            elif isinstance(step, ValidateStep) and step.schema_:
                named[f"schema {step.schema_}"] = [schema_dir / f"{step.schema_}.avsc"]
            elif isinstance(step, ModelStep):
                named[f"model {step.file}"] = [model_file(spec, step.file)]
    files = {}
    for name, paths in sorted(named.items()):
        try:
            files[name] = _sha256(b"".join(path.read_bytes() for path in paths))
        except OSError:
            files[name] = "missing"
    return files


def content_hash(text: str, files: dict[str, str]) -> str:
    """The version's hash: the topology file's ``text`` and each file it reads (``read_files``)."""
    parts = [text, *(f"{p}={h}" for p, h in sorted(files.items()))]
    return _sha256("\0".join(parts).encode())[:HASH_CHARS]


def topology_hash(path: Path, spec: TopologySpec, schema_dir: Path | None) -> str | None:
    """:func:`content_hash` of the topology at ``path`` (as loaded into ``spec``); None when the
    file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return content_hash(text, read_files(spec, schema_dir or path.parent / "schemas"))
