"""Load a topology YAML file into a :class:`TopologySpec`, keeping every line number.

The YAML is read by :mod:`stream_orch.topology.yaml_reader` into plain data plus the line of
every mapping key and sequence item, with ``${VAR}`` / ``${VAR:default}`` substituted in string
scalars and mapping keys, within the limits it sets (size, nesting, aliases, tags); the data is
validated by the pydantic models, and each pydantic error is mapped back to the line it came from.
A user sees ``file:line: message (hint: ...)``, one line per problem, never a traceback.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from stream_orch.errors import UserError
from stream_orch.topology.durations import UNIT_REQUIRED
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import name_rule
from stream_orch.topology.problems import Problem, Severity, SpecError, YAMLRefused
from stream_orch.topology.yaml_reader import MAX_BYTES, Lines, read_yaml, too_large

__all__ = [
    "SCHEMAS_RULE",
    "LoadedTopology",
    "Problem",
    "SchemasNotFound",
    "Severity",
    "SpecError",
    "YAMLRefused",
    "find_schemas_dir",
    "load_topology",
    "parse_topology",
    "schemas_dir_candidates",
]

PathTuple = tuple[str | int, ...]

# Python field names whose YAML key is an alias.
_ALIASES = {"schema_": "schema", "as_": "as", "global_": "global", "id_format": "id"}


@dataclass(slots=True)
class LoadedTopology:
    """A validated spec plus what is needed to point at its lines."""

    spec: TopologySpec
    path: Path
    tree: Lines = field(repr=False)  # where each key and item is written (after interpolation)

    @property
    def file(self) -> str:
        return str(self.path)

    def line_of(self, path: PathTuple) -> int:
        """1-based line of the deepest element of ``path`` found in the YAML.

        Path elements are YAML keys or Python field names (``schema_`` finds ``schema``) and
        list indexes; elements not in the YAML (a defaulted field, a union tag) are skipped,
        so the line is that of the nearest enclosing key.
        """
        return _locate(self.tree, path)

    def problem(self, path: PathTuple, message: str, hint: str = "", severity: Severity = "error") -> Problem:
        return Problem(self.file, self.line_of(path), message, hint, severity)


# --------------------------------------------------------------------------- the schema folder

#: The one rule every command that needs schemas follows (validate, run, graph, test, ...).
SCHEMAS_RULE = "--schemas DIR, else schemas/ beside the topology file, else ./schemas"


class SchemasNotFound(UserError):
    """No schema folder where the rule looks; the message names every folder tried."""

    def __init__(self, topology: str | Path, tried: Sequence[tuple[Path, str]]) -> None:
        self.tried = [path for path, _ in tried]
        shown = ", ".join(f"{path.absolute()} ({why})" for path, why in tried)
        if len(tried) == 1 and tried[0][1] == "--schemas":
            message = f"schema folder {tried[0][0]} (--schemas) does not exist"
        else:
            message = f"no schema folder for {topology}: tried {shown}; pass --schemas DIR"
        super().__init__(message)


def schemas_dir_candidates(topology: str | Path, given: str | Path | None = None) -> list[tuple[Path, str]]:
    """The folders :func:`find_schemas_dir` tries, in order, each with why it is tried."""
    if given is not None:
        return [(Path(given), "--schemas")]
    beside = Path(topology).parent / "schemas"
    here = Path("schemas")
    if beside.resolve() == here.resolve():
        return [(beside, "beside the topology file")]
    return [(beside, "beside the topology file"), (here, "./schemas")]


def find_schemas_dir(topology: str | Path, given: str | Path | None = None) -> Path:
    """The schema folder of the topology at ``topology``: ``given`` (``--schemas``), else
    ``schemas/`` beside the topology file, else ``./schemas`` (see :data:`SCHEMAS_RULE`).

    Raises :class:`SchemasNotFound` (a :class:`UserError`) naming the folders it tried.
    """
    tried = schemas_dir_candidates(topology, given)
    for path, _why in tried:
        if path.is_dir():
            return path
    raise SchemasNotFound(topology, tried)


# --------------------------------------------------------------------------- entry points


def load_topology(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedTopology:
    """Read, interpolate and validate the topology at ``path``.

    Raises :class:`SpecError` listing every problem, or :class:`UserError` when the file
    cannot be read or is refused (:class:`YAMLRefused`: larger than the limit, and the rest of
    :mod:`~stream_orch.topology.yaml_reader`'s limits).
    """
    return parse_topology(read_topology_text(path), path, env)


def read_topology_text(path: str | Path) -> str:
    """The text of the topology file at ``path``, within the size limit; :class:`UserError` (one
    line) when it cannot be read or is refused."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)  # no more: the path may name a huge or endless file
            if len(raw) > MAX_BYTES:
                size = path.stat().st_size
                raise YAMLRefused(str(path), None, too_large(max(size, len(raw))))
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"topology file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a topology file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read topology {path}: {exc}") from None
    return text


def parse_topology(
    text: str, path: str | Path = "<topology>", env: Mapping[str, str] | None = None
) -> LoadedTopology:
    """Like :func:`load_topology` for YAML text; ``path`` is used in messages."""
    path = Path(path)
    file = str(path)
    problems: list[Problem] = []
    data, tree = read_yaml(text, file, os.environ if env is None else env, problems)
    if not isinstance(data, dict):
        raise SpecError(
            [Problem(file, 1, "the topology must be a YAML mapping", "start with `topology: <name>`")]
        )
    try:
        spec = TopologySpec.model_validate(data, context=UNIT_REQUIRED)  # a file's durations need a unit
    except ValidationError as exc:
        # a value left empty by a failed substitution is reported once, as that failure
        bad_lines = {p.line for p in problems}
        problems += [p for p in _validation_problems(exc, tree, file) if p.line not in bad_lines]
    if problems:
        raise SpecError(problems)
    spec._folder = str(path.resolve().parent)  # python steps load modules relative to it
    return LoadedTopology(spec=spec, path=path, tree=tree)


# --------------------------------------------------------------------------- locating lines


def _step(node: Lines, key: str | int) -> tuple[Lines, int] | None:
    """The lines of the child of ``node`` at ``key`` and the 1-based line where it is written."""
    if isinstance(node, dict):
        for candidate in (key, _ALIASES.get(key) if isinstance(key, str) else None):
            if candidate is not None and candidate in node:
                line, child = node[candidate]
                return child, line
        return None
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        line, child = node[key]
        return child, line
    return None


def _walk(tree: Any, path: PathTuple) -> tuple[int, int]:
    """(line, number of path elements matched) of the deepest element of ``path`` in the tree."""
    node, line, matched = tree, 1, 0
    for i, key in enumerate(path):
        found = _step(node, key)
        if found is None:
            continue  # a union tag, a defaulted field, or a scalar turned into a list: skip it
        node, child_line = found
        line = child_line or line
        matched = i + 1
    return line, matched


def _locate(tree: Any, path: PathTuple) -> int:
    return _walk(tree, path)[0]


# --------------------------------------------------------------------------- pydantic errors


def _validation_problems(exc: ValidationError, tree: Any, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    errors = exc.errors(include_url=False)
    for error in errors:
        if _wrong_union_branch(error, errors):
            continue
        loc = tuple(error["loc"])
        line, matched = _walk(tree, loc)
        # a missing or unknown key, or a bad mapping key, names itself in the message: show where
        # it belongs
        if loc and loc[-1] == "[key]":
            where = loc[:-2]
        elif error["type"] in ("missing", "extra_forbidden"):
            where = loc[:-1]
        else:
            where = loc
        shown = _display_loc(where, tree)
        message, hint = _explain(error, loc, matched)
        text = f"{shown}: {message}" if shown else message
        if (line, text) in seen:
            continue
        seen.add((line, text))
        problems.append(Problem(file, line, text, hint))
    return problems


def _display_loc(loc: PathTuple, tree: Any) -> str:
    """``nodes.score.steps[3].rules[0].when`` (union tags and type names left out)."""
    out = ""
    node: Any = tree
    for key in loc:
        found = _step(node, key)
        if found is None:  # a union tag or type name
            continue
        node = found[0]
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            shown = _ALIASES.get(key, key)
            out += f".{shown}" if out else shown
    return out


# union branch names of scalars in pydantic's error locations (a constrained str is a name type)
_SCALAR_TAGS = {"str": str, "constrained-str": str, "int": int, "float": float, "bool": bool}


def _wrong_union_branch(error: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> bool:
    """An error from the branch of a union (``TopicName | RouteTarget``) that the value's shape
    does not match: the scalar branch given a mapping, or the model branch given a scalar.

    Pydantic reports every branch; the user meant the one matching the value's shape.
    """
    loc = tuple(error["loc"])
    if not loc:
        return False
    value = error.get("input")
    if loc[-1] in _SCALAR_TAGS:
        wrong = not isinstance(value, _SCALAR_TAGS[loc[-1]])
    else:
        wrong = error["type"] == "model_type" and isinstance(value, str)
    if not wrong:
        return False
    prefix = loc[:-1]
    return any(
        e is not error
        and tuple(e["loc"])[: len(prefix)] == prefix
        and len(e["loc"]) > len(prefix)
        and (e["loc"][len(prefix)] in _SCALAR_TAGS) != (loc[-1] in _SCALAR_TAGS)
        for e in errors
    )


def _explain(error: Mapping[str, Any], loc: PathTuple, matched: int) -> tuple[str, str]:
    kind = error["type"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    model = _model_at(loc[:-1]) if loc else None
    if isinstance(error.get("ctx"), Mapping) and error["ctx"].get("hint"):
        return msg, str(error["ctx"]["hint"])  # a validator that knows the fix (durations)
    if kind == "missing":
        name = _ALIASES.get(str(loc[-1]), str(loc[-1]))
        return f"`{name}` is required", f"add `{name}: ...` here"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _allowed_keys(model)
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            return f"unknown key `{name}`", f"did you mean `{close[0]}`?"
        if allowed:
            return f"unknown key `{name}`", "allowed keys: " + ", ".join(allowed)
        return f"unknown key `{name}`", "remove it"
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag", "")
        expected = str(error.get("ctx", {}).get("expected_tags", ""))
        tags = [t.strip(" '") for t in expected.split(",")]
        close = difflib.get_close_matches(str(tag), tags, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"one of: {expected}"
        return f"unknown step `{tag}`", hint
    if kind == "union_tag_not_found":
        return "a step needs `step: <kind>`", "e.g. `- step: derive`"
    if kind in ("string_pattern_mismatch", "string_too_long"):
        ctx = error.get("ctx", {})
        rule = name_rule(ctx.get("pattern", ctx.get("max_length", "")))
        if rule is not None:
            return f"`{error['input']}` is not a valid {rule[0]}", rule[1]
    if kind == "literal_error":
        return msg, "use one of the listed values"
    if kind == "string_pattern_mismatch":
        return msg, "see docs/topology-reference.md for the allowed form"
    if kind.startswith(("int_", "float_", "bool_", "string_", "dict_", "list_", "model_")):
        return msg, "check the value's type and indentation"
    if kind == "too_short":
        return msg, "give at least one item"
    return msg, "see docs/topology-reference.md"


def _model_at(loc: PathTuple) -> type[BaseModel] | None:
    """The pydantic model that holds the last element of ``loc`` (for key suggestions)."""
    annotation: Any = TopologySpec
    for key in loc:
        model = _as_model(annotation, key)
        if model is None:
            annotation = _element(annotation, key)
            continue
        name = key if key in model.model_fields else _field_for_alias(model, key)
        # a union tag (`score` in steps[3].score.rules) selects its member model
        annotation = model if name is None else model.model_fields[name].annotation
    return _as_model(annotation, None)


def _as_model(annotation: Any, key: str | int | None) -> type[BaseModel] | None:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            if key is None or key in candidate.model_fields or _field_for_alias(candidate, key):
                return candidate
            tag = candidate.model_fields.get("step")
            if tag is not None and key in typing.get_args(tag.annotation):
                return candidate
    return None


def _field_for_alias(model: type[BaseModel], key: str | int) -> str | None:
    for name, info in model.model_fields.items():
        if info.alias == key:
            return name
    return None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _element(annotation: Any, key: str | int) -> Any:
    """The annotation of an element of a dict or list annotation (or the tag member)."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if origin is dict and args and isinstance(key, str):
            return args[1]
        if origin is list and args and isinstance(key, int):
            return args[0]
    # a union tag such as 'score' selects its member model
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            tag = member.model_fields.get("step")
            if tag is not None and key in typing.get_args(tag.annotation):
                return member
    return annotation


def _allowed_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]
