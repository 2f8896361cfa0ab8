"""The JSON Schema of topology files and the Markdown reference generated from it.

Both come from the pydantic models, so the reference cannot drift from what the loader
accepts: a unit test fails when ``docs/topology-reference.md`` is not what
``python -m stream_orch.topology.docs`` writes.
"""

from __future__ import annotations

import copy
import sys
import typing
from pathlib import Path
from typing import Any

from stream_orch.expressions import FUNCTIONS, bounds
from stream_orch.topology.durations import DURATION_PATTERN
from stream_orch.topology.models import Expression, TopologySpec
from stream_orch.topology.naming import NAME_PATTERN, NAME_RULE, TOPIC_PATTERN, TOPIC_RULE
from stream_orch.topology.yaml_reader import LIMITS

__all__ = ["REFERENCE_PATH", "render_reference", "topology_json_schema", "write_reference"]

_EXPRESSION_DESCRIPTION = typing.get_args(Expression)[1].description
_NAMES = {NAME_PATTERN: "[name](#names)", TOPIC_PATTERN: "[topic name](#names)"}
REFERENCE_PATH = Path(__file__).resolve().parents[2] / "docs" / "topology-reference.md"

# Sections in reading order: model name -> heading. Models not listed are appended.
_SECTIONS: dict[str, str] = {
    "TopologySpec": "Top level",
    "TopicSpec": "topics.&lt;name&gt;",
    "TableSpec": "tables.&lt;name&gt;",
    "NodeSpec": "nodes.&lt;name&gt;",
    "ValidateStep": "step: validate",
    "NormalizeStep": "step: normalize",
    "FieldRule": "normalize field rule",
    "IdFormat": "normalize id format",
    "DeriveStep": "step: derive",
    "FilterStep": "step: filter",
    "DedupeStep": "step: dedupe",
    "EnrichStep": "step: enrich",
    "LookupManyStep": "step: lookup_many",
    "AggregateStep": "step: aggregate",
    "WindowStep": "step: window",
    "WindowAggregation": "window aggregate result",
    "JoinBound": "join bound from a field",
    "ScoreStep": "step: score",
    "ScoreRule": "score rule",
    "Logistic": "score logistic term",
    "MaskStep": "step: mask",
    "PythonStep": "step: python",
    "ModelStep": "step: model",
    "RouteSpec": "routes[]",
    "RouteTarget": "route target",
    "ErrorPolicy": "errors",
    "RetrySpec": "errors.retry",
}

_FUNCTION_DOCS = {
    "min": "smallest argument",
    "max": "largest argument",
    "abs": "absolute value",
    "round": "`round(x, n)`: x rounded to n decimals",
    "len": "length of a string or list",
    "lower": "lower-cased string (None stays None)",
    "upper": "upper-cased string (None stays None)",
    "coalesce": "first argument that is not None",
    "str": "text of a value",
    "int": "integer of a number or numeric string",
    "float": "number of a numeric string",
    "bool": "truth value",
}


_BOUNDS = (
    f"an integer result of `*` or `**` of more than {bounds.MAX_INT_BITS:,} bits, a string or list "
    f"of more than {bounds.MAX_LENGTH:,} characters or items (a list counts the characters of its "
    "strings too) made by `*`, `+` or `str()`, `round(x, n)` "
    f"with `|n|` over {bounds.MAX_ROUND_DIGITS:,}, `%` formatting of a string and a negative number "
    "to a fractional power fail the event (`expression_error`), as do an overflow and a value "
    "nested too deeply to compare."
)


def topology_json_schema() -> dict[str, Any]:
    """The JSON Schema of a topology file (YAML keys, i.e. aliases such as ``schema``)."""
    schema = copy.deepcopy(TopologySpec.model_json_schema(by_alias=True))
    # `to:` also takes one topic or one target without a list (RouteSpec turns it into a list).
    to = schema["$defs"]["RouteSpec"]["properties"]["to"]
    as_list = {k: v for k, v in to.items() if k not in ("description", "title")}
    schema["$defs"]["RouteSpec"]["properties"]["to"] = {
        # the entries are a union chosen by shape (pydantic writes it as oneOf)
        "anyOf": [*as_list["items"].get("anyOf", as_list["items"].get("oneOf", [])), as_list],
        "description": to.get("description", ""),
        "title": to.get("title", "To"),
    }
    _key_rules(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stream-orch topology"
    return schema


def _key_rules(node: Any) -> None:
    """Pydantic writes a map whose keys are a name type as ``patternProperties``, which lets any
    other key through; ``propertyNames`` (the rule every key must follow) and
    ``additionalProperties`` (the values) say what the loader does."""
    if isinstance(node, list):
        for item in node:
            _key_rules(item)
        return
    if not isinstance(node, dict):
        return
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1:
        ((pattern, values),) = patterns.items()
        del node["patternProperties"]
        node["propertyNames"] = {"pattern": pattern, **node.get("propertyNames", {})}
        node["additionalProperties"] = values
    for value in node.values():
        _key_rules(value)


# --------------------------------------------------------------------------- Markdown


def _anchor(model: str) -> str:
    return model.lower()


def _is_duration(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [])
    return any(o.get("pattern") == DURATION_PATTERN for o in options)


def _type(schema: dict[str, Any]) -> str:
    """A short human rendering of a JSON Schema type."""
    if schema.get("type") == "string" and schema.get("description") == _EXPRESSION_DESCRIPTION:
        return "[expression](#expressions)"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if _is_duration(schema):
        return "duration"
    if "oneOf" in schema:
        return " or ".join(_type(s) for s in schema["oneOf"])
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        text = " or ".join(_type(s) for s in options)
        return f"{text} or null" if len(options) < len(schema["anyOf"]) else text
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values:
            keys = _NAMES.get(schema.get("propertyNames", {}).get("pattern", ""), "name")
            return f"map of {keys} → {_type(values)}"
        return "mapping"
    if kind == "string" and schema.get("pattern") in _NAMES:
        return _NAMES[schema["pattern"]]
    if kind == "string" and "pattern" in schema:
        return f"string matching `{schema['pattern']}`"
    names = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
    return names.get(kind, "any") if isinstance(kind, str) else "any"


def _description(schema: dict[str, Any]) -> str:
    text = schema.get("description", "")
    if not text:
        for option in schema.get("anyOf", []):
            if option.get("description"):
                text = option["description"]
                break
    if not text and "items" in schema:
        text = schema["items"].get("description", "")
    if not text and isinstance(schema.get("additionalProperties"), dict):
        text = schema["additionalProperties"].get("description", "")
    return "" if text == _EXPRESSION_DESCRIPTION else text  # the type links to #expressions


def _constraints(schema: dict[str, Any]) -> str:
    words = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minItems": "items ≥",
        "minLength": "length ≥",
    }
    found = [f"{sign} {schema[key]}" for key, sign in words.items() if key in schema]
    return "; ".join(found)


def _cell(text: str) -> str:
    """One table cell: on one line, pipes escaped, and `<` outside code spans as an entity."""
    parts = " ".join(str(text).split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _default(name: str, schema: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "**required**"
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value is None:
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return '`""`' if value == "" else f"`{value}`"


def _model_section(name: str, heading: str, schema: dict[str, Any]) -> list[str]:
    lines = [f'<a id="{_anchor(name)}"></a>', "", f"### {heading}", ""]
    doc = schema.get("description")
    if doc:
        lines += [" ".join(doc.replace("``", "`").split()), ""]
    required = set(schema.get("required", []))
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, prop in schema.get("properties", {}).items():
        description = _description(prop)
        constraint = _constraints(prop)
        if constraint:
            description = f"{description} ({constraint})" if description else constraint
        row = [f"`{key}`", _type(prop), _default(key, prop, required), description]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return [*lines, ""]


_INTRO = """\
# Topology language reference

<!-- Generated from stream_orch/topology/models.py by `python -m stream_orch.topology.docs`; do not edit. -->

A topology is one YAML file (`topologies/<name>.yaml`) with the keys below. Check it with
`stream-orch validate FILE`, draw it with `stream-orch graph FILE --format mermaid|dot`, and get
editor completion from `stream-orch schema` (the JSON Schema of this language).

## Conventions

- **Durations** are a number with its unit: `500ms`, `10s`, `5m`, `24h`, `7d` (`0` needs none). A bare
  number such as `gap: 2` is an error: it does not say whether seconds or minutes are meant.
- **Environment variables**: `${VAR}` or `${VAR:default}` in any string value or mapping key is
  replaced by the variable (or the default), so `${ENV:dev}.payments:` names a topic per
  environment. A missing variable without a default is an error naming its line.
  An unquoted value that is only `${...}` takes its YAML type (`partitions: ${PARTS:6}` is a number;
  keys stay strings); `$$` is a literal `$`.
- **Schemas**: `schema: <name>` refers to `schemas/<name>.avsc` (Avro). Field names in steps,
  expressions and route keys are checked against the input topic's schema plus the fields that
  earlier steps add (derive, enrich, aggregate, score) or drop (mask); after a `python` step they are
  not checked.
- <a id="names"></a>**Names**: topology, node and table NAME_RULE (they become parts of topic
  names, consumer groups and the state folder's paths); TOPIC_RULE. `validate` reports any other
  name with its line.
- **Limits**: LIMITS
- **Retry and DLQ topics** are implied by a node's `errors`: tier *n* reads `<input>.retry.<n>`;
  dead letters go to `errors.dlq` or `<input>.dlq`.
- **Co-partitioning**: a table that is not `global` is split like the node's input; a step that
  looks it up (enrich) or writes it by key (aggregate) must use the input topic's key field, and a
  table fed by a topic needs the input's partition count; after a `repartition` step, the internal
  topic's key and count are what counts. Otherwise make the table global or re-key the records
  first: a `{step: repartition, by: <field>}` step (or a node that routes them to a topic keyed by the
  field). A window after it takes its watermark as the minimum over the writer's source partitions
  (`watermarks`, `idle_timeout`), so re-keying makes no on-time record late.
- **Python code**: a topology file and the modules of its `python` steps are trusted code (like
  the jar of a Kafka Streams application); record keys, values and headers are not. A `python`
  step's `module:function` must be a module in the topology file's folder or a folder listed in
  `python_paths`, found there by its dotted name (`pkg.mod` is `pkg/mod.py`), or a module of a
  package listed in `python_packages`. Anything else (`subprocess`, `os`, `builtins`, any installed
  package) is refused by `validate`, with the line, and again by the worker when it loads the step.

## Expressions

`derive` fields, `filter`, score rules, route `when` and route target `set` are expressions:
Python syntax restricted to a whitelist, checked when the topology is loaded and compiled once
to Python code (no interpreter per event, no arbitrary Python from YAML).

- Literals (numbers, strings, True, False, None), lists, tuples, sets and dicts of expressions.
  A number beyond the float range (`1e999`, which would be infinity) is refused when loading.
- Names: a topology `constants` entry of that name, else the record's field (None when missing).
  `a.b` reads field `b` of a nested record; `x[k]` a key of a mapping or an index of a list.
- Operators: `+ - * / // % **`, unary `-`, `+`, `not`; `and`, `or`; comparisons
  `== != < <= > >=` (chains such as `0 < x <= 10` work), `in`, `not in`, `is None`, `is not None`;
  `a if condition else b`.
- Functions: FUNCTIONS.
- Missing values: an ordering comparison (`< <= > >=`) with a missing side is false;
  `x in c` is false when `c` is missing and `not in` is its negation; arithmetic or a numeric
  function on a missing field fails the event with `missing field <name>` (it goes to the DLQ).
- Bounded results, so that one record cannot stall a worker: BOUNDS.
- Not allowed: attribute or method calls (`x.lower()`: write `lower(x)`), names or attributes
  starting with `__`, lambdas, comprehensions, `:=`, f-strings, slices, other functions.

## Keys
"""


def render_reference() -> str:
    """The Markdown reference of the topology language."""
    schema = topology_json_schema()
    defs = dict(schema["$defs"])
    defs["TopologySpec"] = {k: v for k, v in schema.items() if k not in ("$defs", "$schema", "title")}
    functions = ", ".join(f"`{name}` ({_FUNCTION_DOCS.get(name, '')})" for name in FUNCTIONS)
    intro = _INTRO.replace("FUNCTIONS.", functions + ".").replace("BOUNDS.", _BOUNDS)
    intro = intro.replace("LIMITS", LIMITS)
    intro = intro.replace("NAME_RULE", NAME_RULE).replace("TOPIC_RULE", TOPIC_RULE)
    lines = [intro]
    order = list(_SECTIONS) + sorted(set(defs) - set(_SECTIONS))
    for name in order:
        if name in defs:
            lines += _model_section(name, _SECTIONS.get(name, name), defs[name])
    return "\n".join(lines).rstrip("\n") + "\n"


def write_reference(path: Path = REFERENCE_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_reference(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {write_reference(Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE_PATH)}")
