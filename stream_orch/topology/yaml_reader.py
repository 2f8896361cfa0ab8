"""A topology's YAML read into plain data, the line of every key and item kept, ``${VAR}`` substituted.

The text is parsed into YAML events (libyaml through ruamel.yaml.clib, else ruamel's pure-Python
parser) and the values are built here rather than by ruamel's composer and constructors, because
a file is read before anything says it is reasonable:

* ruamel's composer recurses once per nesting level (a 100,000-deep ``[[[...`` was a
  RecursionError) and its round-trip parser took about 5 s per MB; events built in a loop are
  bounded by :data:`MAX_DEPTH` and fast;
* an alias is not copied here, but pydantic and lint visit every use of it (nine levels of nine
  aliases are 387 million values), so each alias counts the values it repeats and the document
  may hold :data:`MAX_VALUES` values and :data:`MAX_BYTES` of text in all;
* a topology holds plain data: a tag outside the YAML core schema (``!!python/object/apply:...``,
  ``!!binary``, a local ``!tag``) is refused, never constructed.

Those refusals are :class:`YAMLRefused` (one line, ``file:line: ...``); a file that is merely
wrong (bad syntax, a duplicate key, an unknown alias) is a :class:`SpecError` with its line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.nodes import ScalarNode

from stream_orch.topology.problems import Problem, SpecError, YAMLRefused

__all__ = ["LIMITS", "MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "Lines", "read_yaml"]

MAX_BYTES = 4 * 1024 * 1024  # the reference topology has 5 KB; validating 1 MB takes ~1.3 s of CPU
MAX_DEPTH = 64  # a topology nests about 8 levels (nodes.n.steps[0].fields.x.id.prefix)
MAX_VALUES = 1_000_000  # keys, values, items and containers, every alias counted as what it repeats

#: The limits in words, for the reference docs.
LIMITS = (
    f"A topology file may have at most {MAX_BYTES // (1024 * 1024)} MiB and nest at most {MAX_DEPTH} "
    "levels; with every alias (`*name`) counted as what it repeats, it may hold at most "
    f"{MAX_VALUES:,} values and {MAX_BYTES // (1024 * 1024)} MiB of text. Tags other than the YAML 1.2 "
    "core schema's (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`) are refused: a "
    "topology holds plain data. A refused file is one line on stderr and exit code 2."
)

#: Where each key and item of the document is written: a mapping's lines are
#: ``{key: (line of the key, lines of its value)}``, a sequence's ``[(line of the item, lines of
#: the item)]``, a scalar's ``None``. Lines are 1-based.
Lines = dict[Any, tuple[int, "Lines"]] | list[tuple[int, "Lines"]] | None

_CORE = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR = _CORE + "map", _CORE + "seq", _CORE + "str"
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_UNCLOSED = re.compile(r"\$\{(?![^}]*\})")

_SAFE = YAML(typ="safe")  # YAML 1.2 core schema: its resolver and scalar constructors only
_RESOLVER = _SAFE.resolver
_SCALARS: dict[str, Callable[[ScalarNode], Any]] = {
    _CORE + "int": _SAFE.constructor.construct_yaml_int,
    _CORE + "float": _SAFE.constructor.construct_yaml_float,
    _CORE + "bool": _SAFE.constructor.construct_yaml_bool,
    _CORE + "null": _SAFE.constructor.construct_yaml_null,
}


def read_yaml(text: str, file: str, env: Mapping[str, str], problems: list[Problem]) -> tuple[Any, Lines]:
    """The document in ``text`` as plain data (dict, list, str, int, float, bool, None) and its
    :data:`Lines`; ``(None, None)`` for an empty file.

    A missing environment variable is appended to ``problems`` (reading goes on); YAML errors
    raise :class:`SpecError`, the limits and unsafe tags :class:`YAMLRefused`.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YAMLRefused(file, None, too_large(size))
    reader = _Reader(file, env, problems)
    try:
        for event in YAML(typ="safe").parse(text):
            reader.feed(event)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise _error(file, line, f"YAML syntax error: {message}", _SYNTAX_HINT) from None
    except YAMLError as exc:
        raise _error(file, 1, f"YAML error: {exc}", "check the file is valid YAML") from None
    return reader.root


def too_large(size: int) -> str:
    return (
        f"the file has {size:,} bytes; a topology file may have at most {MAX_BYTES:,} "
        f"({MAX_BYTES // (1024 * 1024)} MiB)"
    )


_SYNTAX_HINT = "check indentation, colons and quoting; quote strings that contain ': ' or '#'"


def _error(file: str, line: int, message: str, hint: str) -> SpecError:
    return SpecError([Problem(file, line, message, hint)])


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


@functools.lru_cache(maxsize=8192)
def _typed(text: str) -> Any:
    """A plain (unquoted) scalar's value: int, float, bool or None where YAML 1.2 says so, else the
    text (a timestamp stays text: no topology field takes a date object)."""
    tag = str(_RESOLVER.resolve(ScalarNode, text, (True, False)))
    construct = _SCALARS.get(tag)
    if construct is None:
        return text
    try:
        return construct(ScalarNode(tag, text))
    except (ValueError, IndexError, KeyError):  # `._`, `-_`, `0x_`: the resolver's numbers, not int()'s
        return text


@dataclass(slots=True)
class _Anchor:
    data: Any
    lines: Lines
    values: int  # values it holds, aliases inside it counted as what they repeat
    text: int  # characters of its scalars, likewise
    height: int  # nesting levels it spans (a scalar: 0)


@dataclass(slots=True)
class _Key:
    line: int
    written: Any  # as written: duplicates are checked on it
    key: Any  # after ${VAR} substitution
    merge: bool = False  # `<<`
    substituted: bool = False  # key != written


@dataclass(slots=True)
class _Frame:
    """A mapping or sequence being read."""

    mapping: bool
    line: int
    anchor: str | None
    start_values: int
    start_text: int
    height: int = 1
    items: list[Any] = field(default_factory=list)  # sequence: the items; mapping: (key, value, lines)
    lines: list[tuple[int, Lines]] = field(default_factory=list)  # sequence only
    key: _Key | None = None  # mapping: the key whose value comes next
    written: dict[Any, int] = field(default_factory=dict)  # mapping: key as written -> its line


class _Reader:
    def __init__(self, file: str, env: Mapping[str, str], problems: list[Problem]) -> None:
        self.file, self.env, self.problems = file, env, problems
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchor] = {}
        self.values = 0
        self.text = 0
        self.documents = 0
        self.root: tuple[Any, Lines] = (None, None)

    def feed(self, event: Event) -> None:
        kind = type(event)
        if kind is ScalarEvent:
            self._scalar(event)  # type: ignore[arg-type]
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            self._start(event, mapping=kind is MappingStartEvent)  # type: ignore[arg-type]
        elif kind is MappingEndEvent:
            self._end_mapping()
        elif kind is SequenceEndEvent:
            frame = self.stack.pop()
            self._close(frame, frame.items, frame.lines)
        elif kind is AliasEvent:
            self._alias(event)  # type: ignore[arg-type]
        elif kind is DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                line = event.start_mark.line + 1
                raise _error(self.file, line, "the file holds more than one YAML document", "remove `---`")

    # ------------------------------------------------------------------ limits

    def _count(self, values: int, text: int, line: int, alias: bool = False) -> None:
        self.values += values
        self.text += text
        if self.values <= MAX_VALUES and self.text <= MAX_BYTES:
            return
        what = f"{MAX_VALUES:,} values" if self.values > MAX_VALUES else f"{MAX_BYTES:,} bytes of text"
        if alias:
            message = f"YAML aliases expand the document beyond {what} (the limit of a topology)"
        else:
            message = f"the document holds more than {what} (the limit of a topology)"
        raise YAMLRefused(self.file, line, message)

    def _deep(self, line: int) -> YAMLRefused:
        return YAMLRefused(self.file, line, f"YAML nesting deeper than {MAX_DEPTH} levels")

    def _tag(self, tag: str | None, allowed: frozenset[str], line: int) -> None:
        if tag is None or tag == "!" or tag in allowed:
            return
        raise YAMLRefused(
            self.file,
            line,
            f"YAML tag `{_shown_tag(tag)}` is not allowed: a topology holds plain data "
            "(allowed: !!str, !!int, !!float, !!bool, !!null, !!seq, !!map)",
        )

    # ------------------------------------------------------------------ events

    def _scalar(self, event: ScalarEvent) -> None:
        line = event.start_mark.line + 1
        tag = None if event.tag is None else str(event.tag)
        self._tag(tag, _SCALAR_TAGS, line)
        self._count(1, len(event.value), line)
        plain = tag is None and event.implicit[0]
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.mapping and frame.key is None:
            written = _typed(event.value) if plain else self._explicit(tag, event.value, line)
            self._set_key(frame, written, line, merge=plain and event.value == "<<")
            if event.anchor is not None:
                self.anchors[event.anchor] = _Anchor(written, None, 1, len(event.value), 0)
            return
        if "$" in event.value and tag in (None, "!", _STR):
            value = self._substitute(event.value, line, typed=plain)
        elif plain:
            value = _typed(event.value)
        else:
            value = self._explicit(tag, event.value, line)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, None, 1, len(event.value), 0)
        self._add(value, None, 0, line)

    def _explicit(self, tag: str | None, text: str, line: int) -> Any:
        construct = _SCALARS.get(tag or _STR)
        if construct is None:
            return text
        try:
            return construct(ScalarNode(tag, text))
        except (ValueError, IndexError, KeyError, YAMLError):
            raise _error(
                self.file, line, f"`{text}` is not a valid {_shown_tag(tag or _STR)}", "remove the tag"
            ) from None

    def _start(self, event: MappingStartEvent | SequenceStartEvent, mapping: bool) -> None:
        line = event.start_mark.line + 1
        self._tag(None if event.tag is None else str(event.tag), _MAP_TAGS if mapping else _SEQ_TAGS, line)
        self._not_a_key(line)
        frame = _Frame(mapping, line, event.anchor, self.values, self.text)
        self._count(1, 0, line)
        self.stack.append(frame)
        if len(self.stack) > MAX_DEPTH:
            raise self._deep(line)

    def _alias(self, event: AliasEvent) -> None:
        line = event.start_mark.line + 1
        anchor = self.anchors.get(str(event.anchor))
        if anchor is None:
            raise _error(
                self.file,
                line,
                f"YAML alias `*{event.anchor}` names no anchor before it",
                "define `&name` first",
            )
        self._count(anchor.values, anchor.text, line, alias=True)
        if len(self.stack) + anchor.height > MAX_DEPTH:
            raise self._deep(line)
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.mapping and frame.key is None:
            if anchor.lines is not None or isinstance(anchor.data, dict | list):
                self._not_a_key(line)
            self._set_key(frame, anchor.data, line)
            return
        self._add(anchor.data, anchor.lines, anchor.height, line)

    def _end_mapping(self) -> None:
        frame = self.stack.pop()
        data: dict[Any, Any] = {}
        lines: dict[Any, tuple[int, Lines]] = {}
        as_written = {key.key for key, _, _ in frame.items if not key.substituted}
        merges = []
        for key, value, value_lines in frame.items:
            if key.merge:
                merges.append((key.line, value, value_lines))
            elif key.substituted and (key.key in as_written or key.key in data):
                message = f"`{key.written}` becomes `{key.key}`, which is already a key here"
                self.problems.append(Problem(self.file, key.line, message))
            else:
                data[key.key] = value
                lines[key.key] = (key.line, value_lines)
        for line, value, value_lines in merges:  # keys written here win, then the first merged
            for merged, merged_lines in self._merged(value, value_lines, line):
                for key, item in merged.items():
                    if key not in data:
                        data[key] = item
                        lines[key] = merged_lines[key] if isinstance(merged_lines, dict) else (line, None)
        self._close(frame, data, lines)

    def _merged(self, value: Any, value_lines: Lines, line: int) -> list[tuple[dict[Any, Any], Lines]]:
        if isinstance(value, dict):
            return [(value, value_lines)]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            item_lines = value_lines if isinstance(value_lines, list) else [(line, None)] * len(value)
            return [(item, lines) for item, (_, lines) in zip(value, item_lines, strict=True)]
        raise _error(self.file, line, "`<<` merges a mapping or a list of mappings", "e.g. `<<: *defaults`")

    # ------------------------------------------------------------------ building

    def _close(self, frame: _Frame, data: Any, lines: Lines) -> None:
        if frame.anchor is not None:
            values, text = self.values - frame.start_values, self.text - frame.start_text
            self.anchors[frame.anchor] = _Anchor(data, lines, values, text, frame.height)
        self._add(data, lines, frame.height, frame.line)

    def _add(self, data: Any, lines: Lines, height: int, line: int) -> None:
        if not self.stack:
            self.root = (data, lines)
            return
        frame = self.stack[-1]
        frame.height = max(frame.height, height + 1)
        if frame.mapping:
            frame.items.append((frame.key, data, lines))
            frame.key = None
        else:
            frame.items.append(data)
            frame.lines.append((line, lines))

    def _not_a_key(self, line: int) -> None:
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.mapping and frame.key is None:
            raise _error(
                self.file,
                line,
                "a mapping key must be a single value, not a list or mapping",
                "write `key: value`",
            )

    def _set_key(self, frame: _Frame, written: Any, line: int, merge: bool = False) -> None:
        first = frame.written.get(written)
        if first is not None:
            raise _error(
                self.file,
                line,
                f'YAML syntax error: duplicate key "{written}" (first at line {first})',
                "each key may appear once in a mapping",
            )
        frame.written[written] = line
        key = written
        if isinstance(written, str) and "$" in written and not merge:
            # keys stay strings (`${N:7}: {}` is the key "7") and keep their place and line
            key = str(self._substitute(written, line, typed=False))
        frame.key = _Key(line, written, key, merge, substituted=key != written)

    # ------------------------------------------------------------------ ${VAR}

    def _substitute(self, value: str, line: int, typed: bool) -> Any:
        """``value`` with ``${VAR}``/``${VAR:default}`` replaced and ``$$`` made ``$``. A plain
        scalar (``typed``) that is one ``${...}`` takes the type its text has in YAML
        (``partitions: ${PARTITIONS:6}`` is the number 6)."""
        if _UNCLOSED.search(value):
            hint = "write ${VAR} or ${VAR:default}; $$ is a literal $"
            self.problems.append(Problem(self.file, line, "unclosed ${ in a string", hint))
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            message = f"environment variable {name} is not set and has no default"
            self.problems.append(
                Problem(self.file, line, message, f"export {name}=... or write ${{{name}:default}}")
            )
            return ""

        whole = _INTERPOLATION.fullmatch(value)
        result = _INTERPOLATION.sub(replace, value)
        if typed and whole and whole.group(0) != "$$":
            return "" if result.strip() == "" else _typed(result)
        return result


_SCALAR_TAGS = frozenset(_CORE + name for name in ("str", "int", "float", "bool", "null"))
_MAP_TAGS = frozenset([_MAP])
_SEQ_TAGS = frozenset([_SEQ])
