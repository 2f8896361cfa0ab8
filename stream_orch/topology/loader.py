"""Load a topology YAML file into a :class:`TopologySpec`, keeping every line number.

The YAML is read with ruamel's round-trip loader so every mapping key and sequence item
knows its line; ``${VAR}`` / ``${VAR:default}`` are substituted in string scalars and mapping
keys; the result is validated by the pydantic models, and each pydantic error is mapped back to
the line it came from. A user sees ``file:line: message (hint: ...)``, one line per problem,
never a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import ScalarString

from stream_orch.errors import UserError
from stream_orch.topology.durations import UNIT_REQUIRED
from stream_orch.topology.models import TopologySpec

__all__ = [
    "SCHEMAS_RULE",
    "LoadedTopology",
    "Problem",
    "SchemasNotFound",
    "SpecError",
    "find_schemas_dir",
    "load_topology",
    "parse_topology",
    "schemas_dir_candidates",
]

Severity = Literal["error", "warning"]
PathTuple = tuple[str | int, ...]

# Python field names whose YAML key is an alias.
_ALIASES = {"schema_": "schema", "as_": "as", "global_": "global", "id_format": "id"}
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_UNCLOSED = re.compile(r"\$\{(?![^}]*\})")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a topology, at a line of its file."""

    file: str
    line: int
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        level = "warning: " if self.severity == "warning" else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}: {level}{self.message}{hint}"


class SpecError(UserError):
    """A topology that cannot be loaded; ``problems`` lists each one with its line."""

    exit_code = 1

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(slots=True)
class LoadedTopology:
    """A validated spec plus what is needed to point at its lines."""

    spec: TopologySpec
    path: Path
    tree: Any = field(repr=False)  # the ruamel round-trip tree (after interpolation)

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
    cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"topology file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a topology file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read topology {path}: {exc}") from None
    return parse_topology(text, path, env)


def parse_topology(
    text: str, path: str | Path = "<topology>", env: Mapping[str, str] | None = None
) -> LoadedTopology:
    """Like :func:`load_topology` for YAML text; ``path`` is used in messages."""
    path = Path(path)
    file = str(path)
    tree = _parse_yaml(text, file)
    if not isinstance(tree, CommentedMap):
        raise SpecError(
            [Problem(file, 1, "the topology must be a YAML mapping", "start with `topology: <name>`")]
        )
    problems: list[Problem] = []
    data = _interpolate(tree, file, os.environ if env is None else env, problems)
    try:
        spec = TopologySpec.model_validate(data, context=UNIT_REQUIRED)  # a file's durations need a unit
    except ValidationError as exc:
        # a value left empty by a failed substitution is reported once, as that failure
        bad_lines = {p.line for p in problems}
        problems += [p for p in _validation_problems(exc, tree, file) if p.line not in bad_lines]
    if problems:
        raise SpecError(problems)
    return LoadedTopology(spec=spec, path=path, tree=tree)


# --------------------------------------------------------------------------- YAML


def _parse_yaml(text: str, file: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part) or "invalid YAML"
        if "duplicate key" in message:
            hint = "each key may appear once in a mapping"
        else:
            hint = "check indentation, colons and quoting; quote strings that contain ': ' or '#'"
        raise SpecError([Problem(file, line, f"YAML syntax error: {message}", hint)]) from None
    except YAMLError as exc:
        raise SpecError([Problem(file, 1, f"YAML error: {exc}", "check the file is valid YAML")]) from None


def _interpolate(node: Any, file: str, env: Mapping[str, str], problems: list[Problem], line: int = 1) -> Any:
    """Plain Python data from the ruamel tree, with ``${VAR:default}`` substituted.

    The tree itself is updated too so that it stays what was validated.
    """
    if isinstance(node, CommentedMap):
        _interpolate_keys(node, file, env, problems)
        out = {}
        for key, value in node.items():
            value_line = node.lc.value(key)[0] + 1 if key in node.lc.data else line
            new = _interpolate(value, file, env, problems, value_line)
            if isinstance(value, str) and new != value:
                node[key] = new
            out[str(key) if isinstance(key, ScalarString) else key] = new
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            item_line = node.lc.item(i)[0] + 1 if i in node.lc.data else line
            new = _interpolate(value, file, env, problems, item_line)
            if isinstance(value, str) and new != value:
                node[i] = new
            items.append(new)
        return items
    if isinstance(node, str):
        return _substitute(node, file, env, problems, line)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _interpolate_keys(node: CommentedMap, file: str, env: Mapping[str, str], problems: list[Problem]) -> None:
    """``${VAR}`` in mapping keys (``${ENV}.payments`` as a topic name). Keys stay strings and
    keep their place and line in the tree, so later problems still point at the right line."""
    for position, key in enumerate(list(node.keys())):
        if not isinstance(key, str) or "$" not in key:
            continue
        line = node.lc.key(key)[0] + 1 if key in node.lc.data else 1
        new = str(_substitute(ScalarString(key), file, env, problems, line))  # quoted: no typing
        if new == key:
            continue
        if new in node:
            problems.append(Problem(file, line, f"`{key}` becomes `{new}`, which is already a key here"))
            continue
        where = node.lc.data.get(key)
        value = node.pop(key)
        node.insert(position, new, value)
        if where is not None:
            node.lc.data[new] = where


def _substitute(value: str, file: str, env: Mapping[str, str], problems: list[Problem], line: int) -> Any:
    quoted = isinstance(value, ScalarString)
    plain_text = str(value)
    if "$" not in plain_text:
        return plain_text
    if _UNCLOSED.search(plain_text):
        problems.append(
            Problem(
                file, line, "unclosed ${ in a string", "write ${VAR} or ${VAR:default}; $$ is a literal $"
            )
        )
        return plain_text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(
            Problem(
                file,
                line,
                f"environment variable {name} is not set and has no default",
                f"export {name}=... or write ${{{name}:default}}",
            )
        )
        return ""

    whole = _INTERPOLATION.fullmatch(plain_text)
    result = _INTERPOLATION.sub(replace, plain_text)
    if whole and whole.group(0) != "$$" and not quoted:
        # An unquoted scalar that is one ${...} takes the type the value has in YAML
        # (`partitions: ${PARTITIONS:6}` is the number 6).
        return _yaml_scalar(result)
    return result


def _yaml_scalar(text: str) -> Any:
    try:
        value = YAML(typ="safe").load(text)
    except YAMLError:
        return text
    if value is None and text.strip() == "":
        return ""
    return value if isinstance(value, str | int | float | bool) or value is None else text


# --------------------------------------------------------------------------- locating lines


def _step(node: Any, key: str | int) -> tuple[Any, int] | None:
    """The child of ``node`` at ``key`` and the 1-based line where it is written."""
    if isinstance(node, CommentedMap):
        for candidate in (key, _ALIASES.get(key) if isinstance(key, str) else None):
            if candidate is not None and candidate in node:
                line = node.lc.key(candidate)[0] + 1 if candidate in node.lc.data else 0
                return node[candidate], line
        return None
    if isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
        line = node.lc.item(key)[0] + 1 if key in node.lc.data else 0
        return node[key], line
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
        # a missing or unknown key names itself in the message: show where it belongs
        where = loc[:-1] if error["type"] in ("missing", "extra_forbidden") else loc
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


_SCALAR_TAGS = {"str": str, "int": int, "float": float, "bool": bool}


def _wrong_union_branch(error: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> bool:
    """An error from the scalar branch of a union (``str | RouteTarget``) given a mapping.

    Pydantic reports every branch; the user meant the one matching the value's shape.
    """
    loc = tuple(error["loc"])
    if not loc or loc[-1] not in _SCALAR_TAGS or isinstance(error.get("input"), _SCALAR_TAGS[loc[-1]]):
        return False
    prefix = loc[:-1]
    return any(tuple(e["loc"])[: len(prefix)] == prefix and e is not error for e in errors)


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
