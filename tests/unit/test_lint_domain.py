"""Lint of issue 20's mistakes beyond the bad_parcels_*.yaml fixtures (those check file:line, the
hint and the exit code through `stream-orch validate`): what silences each rule, and the forms an
enum comparison takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.topology.lint import lint
from stream_orch.topology.lint_domain import compared_literals, enum_fields, symbol_hint
from stream_orch.topology.loader import Problem, parse_topology

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "tests" / "fixtures" / "topologies"
SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
PARCELS = (TOPOLOGIES / "parcels.yaml").read_text()


def errors(text: str) -> list[Problem]:
    loaded = parse_topology(text, TOPOLOGIES / "inline.yaml", env={})
    return [p for p in lint(loaded, SCHEMAS) if p.severity == "error"]


def messages(text: str) -> list[str]:
    return [p.message for p in errors(text)]


def test_the_parcels_fixture_lints_clean() -> None:
    assert lint(parse_topology(PARCELS, TOPOLOGIES / "parcels.yaml", env={}), SCHEMAS) == []


# ---------------------------------------------------------------------------- joins


WITHOUT_FIELDS = PARCELS.replace("        fields: [promised_by, service]\n", "")


def test_a_join_copying_every_field_overwrites_ts_but_not_its_own_key() -> None:
    found = messages(WITHOUT_FIELDS)
    assert found == [  # not parcel_id: the join key, equal on both sides
        "node `deliveries`, step join: `shipments`'s field `ts` would overwrite this side's `ts` in every "
        "match"
    ]


def test_a_prefix_or_overwrite_allows_the_collision() -> None:
    assert (
        messages(
            WITHOUT_FIELDS.replace("        how: left\n", "        how: left\n        prefix: s_\n").replace(
                "service ==", "s_service =="
            )
        )
        == []
    )
    assert (
        messages(
            WITHOUT_FIELDS.replace("        how: left\n", "        how: left\n        overwrite: [ts]\n")
        )
        == []
    )


def test_a_named_field_that_collides_is_an_error_at_its_item() -> None:
    text = PARCELS.replace("fields: [promised_by, service]", "fields: [promised_by, service, ts]")
    [problem] = errors(text)
    assert "`ts` would overwrite this side's `ts`" in problem.message
    assert problem.line == PARCELS.splitlines().index("        fields: [promised_by, service]") + 1


def test_overwrite_naming_no_collision_is_a_warning() -> None:
    text = PARCELS.replace("        how: left\n", "        how: left\n        overwrite: [hub]\n")
    problems = lint(parse_topology(text, TOPOLOGIES / "inline.yaml", env={}), SCHEMAS)
    assert [(p.severity, p.message) for p in problems] == [
        (
            "warning",
            "node `deliveries`, step join: `overwrite` names `hub`, which the other side does not overwrite",
        )
    ]


# ---------------------------------------------------------------------------- windows


@pytest.mark.parametrize("name", ["window_start", "window_end", "parcel_id", "ts", "kind"])
def test_a_window_result_named_like_a_field_is_an_error(name: str) -> None:
    [problem] = errors(PARCELS.replace("as: scan_count", f"as: {name}"))
    assert f"`as: {name}` is" in problem.message and problem.hint


@pytest.mark.parametrize("name", ["ts", "kind"])  # the key and window times: the model refuses them
def test_each_result_of_a_window_aggregate_is_checked_too(name: str) -> None:
    text = PARCELS.replace("as: scan_count", f"aggregate: {{scans: count, {name}: {{last: hub}}}}")
    [problem] = errors(text)
    assert f"`aggregate: {name}` is" in problem.message and problem.hint
    assert errors(PARCELS.replace("as: scan_count", "aggregate: {scans: count, last_hub: {last: hub}}")) == []


# ---------------------------------------------------------------------------- tables


def test_a_table_written_by_two_nodes_is_an_error_naming_both() -> None:
    text = PARCELS.replace("        table: sessions\n", "        table: deadlines\n")
    [problem] = errors(text)
    assert problem.message.startswith(
        "node `sessions`, step window: table `deadlines` is also written by node `deliveries`"
    )


def test_one_node_writing_its_table_in_two_steps_is_not_this_error() -> None:
    text = PARCELS.replace(
        "      - step: filter\n",
        "      - step: dedupe\n        field: parcel_id\n        table: deadlines\n        horizon: 1h\n"
        "      - step: filter\n",
    )
    assert not any("also written" in m for m in messages(text))


# ---------------------------------------------------------------------------- enums


@pytest.mark.parametrize(
    ("when", "bad"),
    [
        ("kind == 'deliverd'", "deliverd"),
        ("'deliverd' == kind", "deliverd"),
        ("kind != 'X' or hub == 'x'", "X"),  # hub is a string field: anything goes
        ("kind in ['DELIVERED', 'LOST']", "LOST"),
        ("kind not in ('LOST',)", "LOST"),
        ("hub < 'b' < kind == 'NOPE'", "NOPE"),  # a chained comparison, pair by pair
        ("previous_kind == 'SORTD'", "SORTD"),  # a nullable enum named earlier in the file
        ("service == 'EXPRESS'", "EXPRESS"),  # the joined side's enum (symbols are lower case)
        ("join_status == 'matchd'", "matchd"),  # the join's status field
        ("kind in lost_kinds", "LOST"),  # a constant holding strings
    ],
)
def test_a_route_comparing_an_enum_with_a_non_symbol_is_an_error(when: str, bad: str) -> None:
    text = PARCELS.replace(
        "  final_kinds: [DELIVERED, RETURNED]\n",
        "  final_kinds: [DELIVERED, RETURNED]\n  lost_kinds: [LOST]\n",
    )
    text = text.replace(
        "      - when: kind == 'DELIVERED' and join_status == 'matched'", f'      - when: "{when}"'
    )
    found = messages(text)
    assert len(found) == 1 and f"'{bad}' is not a symbol of enum field" in found[0], found


@pytest.mark.parametrize(
    "when",
    [
        "kind == 'DELIVERED'",
        "kind == None",
        "lower(kind) == 'delivered'",  # not the field itself: not checked
        "kind == previous_kind",
        "hub == 'anything'",
        "kind in final_kinds",
    ],
)
def test_symbols_and_other_comparisons_pass(when: str) -> None:
    text = PARCELS.replace(
        "      - when: kind == 'DELIVERED' and join_status == 'matched'", f'      - when: "{when}"'
    )
    assert messages(text) == []


def test_a_derived_copy_keeps_the_symbols_and_a_computed_field_has_none() -> None:
    text = PARCELS.replace(
        "          express: service == 'express'\n",
        "          express: service == 'express'\n          k: kind\n          up: upper(hub)\n",
    )
    route = "      - when: kind == 'DELIVERED' and join_status == 'matched'"
    assert messages(text.replace(route, "      - when: up == 'x'")) == []
    [message] = messages(text.replace(route, "      - when: k == 'x'"))
    assert "enum field `k`" in message


def test_after_a_python_step_enums_are_not_followed() -> None:
    text = PARCELS.replace(
        "      - step: derive\n", "      - step: python\n        function: mymod:fn\n      - step: derive\n"
    ).replace("express: service == 'express'", "express: service == 'whatever'")
    text = text.replace("\nnodes:\n", "\npython_packages: [mymod]\nnodes:\n", 1)  # item 5 of issue 19
    assert messages(text) == []


def test_compared_literals_and_enum_fields() -> None:
    assert list(compared_literals("a == 'x' and 'y' != b and c in ['p', 1] and K == d", {"K": "k"})) == [
        ("a", "x"),
        ("b", "y"),
        ("c", "p"),
        ("d", "k"),
    ]
    assert list(compared_literals("a ==", {})) == []  # invalid: lint reports it elsewhere
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "namespace": "n", "symbols": ["A", "B"]}},
            {"name": "f", "type": ["null", "n.E"]},
            {"name": "g", "type": "string"},
        ],
    }
    assert enum_fields(schema) == {"e": ("A", "B"), "f": ("A", "B"), "g": None}


def test_symbol_hint() -> None:
    assert symbol_hint("deliverd", ("ARRIVED", "DELIVERED")) == "did you mean `DELIVERED`?"
    assert symbol_hint("zzz", ("A", "B")) == "the symbols are A, B"


def test_validate_prints_one_line_per_mistake_with_its_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_orch.cli.main import main

    text = (
        PARCELS.replace("        fields: [promised_by, service]\n", "")
        .replace("kind != 'SORTED'", "kind != 'SORTD'")
        .replace("as: scan_count", "as: parcel_id")
    )
    path = tmp_path / "topologies" / "parcels.yaml"
    path.parent.mkdir()
    path.write_text(text)
    assert main(["validate", str(path), "--schemas", str(SCHEMAS)]) == 1
    out = capsys.readouterr().out.splitlines()
    lines = text.splitlines()
    expected = {
        lines.index("        when: kind != 'SORTD' and previous_kind != 'RETURNED'") + 1: "'SORTD'",
        lines.index("        topic: shipments") + 1: "`ts` would overwrite",
        lines.index("        as: parcel_id") + 1: "`as: parcel_id` is its key",
    }
    assert len(out) == 3, out
    for (line, fragment), printed in zip(sorted(expected.items()), out, strict=True):
        assert printed.startswith(f"{path}:{line}: ") and fragment in printed and "(hint: " in printed


def test_validate_prints_a_bare_duration_as_one_line_with_its_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_orch.cli.main import main

    path = tmp_path / "parcels.yaml"
    path.write_text(PARCELS.replace("gap: 2h", "gap: 2"))
    assert main(["validate", str(path), "--schemas", str(SCHEMAS)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    number = PARCELS.splitlines().index("        gap: 2h") + 1
    assert line == (
        f"{path}:{number}: nodes.sessions.steps[0].gap: `2` has no unit: a duration needs one of "
        "ms, s, m, h, d (hint: did you mean `2s`, `2m` or `2h`? (`2ms` for milliseconds))"
    )
