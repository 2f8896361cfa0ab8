"""topology/diff.py: each kind of change gives its item, at the line it is written on; what the
loader reads the same (comments, key order, another spelling of a duration) gives none."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from stream_orch.topology.diff import Change, diff_topologies
from stream_orch.topology.loader import parse_topology

FRAUD = Path(__file__).resolve().parents[2] / "topologies" / "fraud_detection.yaml"
BASE = """\
topology: shop
version: "1"
constants:
  limit: 100
  rates: {EUR: 1.0, USD: 0.9}
topics:
  orders:
    partitions: 6
    key: id
    retention: 7d
  orders.clean:
    partitions: 6
  orders.big:
    partitions: 6
  orders.small:
    partitions: 6
tables:
  seen:
    description: ids seen
nodes:
  clean:
    input: orders
    steps:
      - step: normalize
        fields:
          id: {type: string, strip: true}
      - step: derive
        fields:
          eur: amount * rates[currency]
          big: eur > limit
      - step: dedupe
        field: id
        table: seen
        horizon: 24h
      - step: score
        rules:
          - {name: large, when: eur > 1000, weight: 0.5}
          - {name: foreign, when: country != 'FR', weight: 0.25}
      - step: mask
        key: "${MASK_KEY:k1}"
        fields: {email: hash}
    routes:
      - to: orders.clean
      - when: score >= 0.5
        to:
          - topic: orders.big
            set:
              flag: "'high'"
          - http:
              name: crm
              url: https://crm.example/hook
              headers: {Authorization: "Bearer ${CRM_TOKEN:t1}"}
      - otherwise: true
        to: orders.small
    errors:
      retry:
        delays: [1s, 5s]
        on: [timeout]
      dlq: orders.dlq
"""


def _diff(old_text: str, new_text: str) -> list[Change]:
    return diff_topologies(parse_topology(old_text, "old.yaml"), parse_topology(new_text, "new.yaml"))


def _edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _line(text: str, fragment: str) -> int:
    (line,) = [n for n, row in enumerate(text.splitlines(), 1) if fragment in row]
    return line


def _only(changes: list[Change]) -> Change:
    assert len(changes) == 1, [str(c) for c in changes]
    return changes[0]


def test_comments_key_order_and_spellings_are_no_change():
    reordered = _edit(
        "    partitions: 6\n    key: id\n    retention: 7d\n",
        "    retention: 168h  # a week\n    key: id\n    partitions: 6\n",
    )
    reordered = _edit("weight: 0.5}", "weight: 0.50}", reordered)
    reordered = _edit("delays: [1s, 5s]", "delays: [1000ms, 5s]  # same", reordered)
    reordered = "# a new comment\n" + reordered
    assert _diff(BASE, reordered) == []


@pytest.mark.parametrize(
    ("old", "new", "area", "message", "fragment"),
    [
        (
            "    retention: 7d\n",
            "    retention: 3d\n",
            "topic",
            "topic orders: retention: 7d -> 3d",
            "retention: 3d",
        ),
        (
            "  orders.small:\n    partitions: 6\n",
            "  orders.small:\n    partitions: 12\n",
            "topic",
            "topic orders.small: partitions: 6 -> 12",
            "partitions: 12",
        ),
        (
            "    description: ids seen\n",
            "    description: ids seen today\n",
            "table",
            "table seen: description: ids seen -> ids seen today",
            "ids seen today",
        ),
        (
            "big: eur > limit",
            "big: eur > 2 * limit",
            "step",
            "step clean.derive: fields.big: eur > limit -> eur > 2 * limit",
            "big: eur > 2",
        ),
        ("horizon: 24h", "horizon: 48h", "step", "step clean.dedupe: horizon: 1d -> 2d", "horizon: 48h"),
        (
            "{name: foreign, when: country != 'FR', weight: 0.25}",
            "{name: foreign, when: country != 'FR', weight: 0.3}",
            "step",
            "step clean.score: rule foreign weight: 0.25 -> 0.3",
            "name: foreign",
        ),
        (
            "{name: large, when: eur > 1000, weight: 0.5}",
            "{name: large, when: eur > 2000, weight: 0.5}",
            "step",
            "step clean.score: rule large when: eur > 1000 -> eur > 2000",
            "name: large",
        ),
        (
            "      - when: score >= 0.5\n",
            "      - when: score >= 0.6\n",
            "route",
            "route clean #2 (when score >= 0.6): when: score >= 0.5 -> score >= 0.6",
            "score >= 0.6",
        ),
        (
            "flag: \"'high'\"",
            "flag: \"'urgent'\"",
            "route",
            "route clean #2 (when score >= 0.5): to topic orders.big: set.flag: 'high' -> 'urgent'",
            "flag:",
        ),
        (
            "delays: [1s, 5s]",
            "delays: [1s, 10s]",
            "error_policy",
            'clean errors: retry.delays: ["1s","5s"] -> ["1s","10s"]',
            "delays",
        ),
        (
            "dlq: orders.dlq",
            "dlq: orders.dead",
            "error_policy",
            "clean errors: dlq: orders.dlq -> orders.dead",
            "dlq:",
        ),
        ("  limit: 100\n", "  limit: 200\n", "constant", "constant limit: 100 -> 200", "limit: 200"),
        (
            "url: https://crm.example/hook",
            "url: https://crm2.example/hook",
            "target",
            "route clean #2 (when score >= 0.5): to http crm: url: https://crm.example/hook -> "
            "https://crm2.example/hook",
            "url:",
        ),
        ('version: "1"', 'version: "2"', "topology", "topology: version: 1 -> 2", "version"),
    ],
)
def test_each_kind_of_change_is_one_item_at_its_line(old, new, area, message, fragment):
    text = _edit(old, new)
    change = _only(_diff(BASE, text))
    assert change.area == area
    assert (change.file, change.kind) == ("new.yaml", "changed")
    assert change.message == message
    assert change.line == _line(text, fragment)


def test_a_key_added_to_or_removed_from_a_mapping():
    text = _edit("{EUR: 1.0, USD: 0.9}", "{EUR: 1.0, GBP: 1.2}")
    got = [(c.kind, c.area, c.message, c.file, c.line) for c in _diff(BASE, text)]
    assert got == [
        ("removed", "constant", "constant rates: USD removed (was 0.9)", "old.yaml", _line(BASE, "rates:")),
        ("added", "constant", "constant rates: GBP added: 1.2", "new.yaml", _line(text, "rates:")),
    ]


def test_a_route_target_changed_is_a_removal_and_an_addition():
    text = _edit("        to: orders.small\n", "        to: orders.clean\n")
    # one route, its `to` entry differs: aligned by its condition, the target by its topic
    changes = _diff(BASE, text)
    assert [(c.kind, c.area, c.message, c.file) for c in changes] == [
        ("removed", "route", "route clean #3 (otherwise): to removed (was orders.small)", "old.yaml"),
        ("added", "route", "route clean #3 (otherwise): to added: orders.clean", "new.yaml"),
    ]


def test_added_removed_and_moved_items():
    text = _edit("  orders.small:\n", "  orders.tiny:\n    partitions: 1\n  orders.small:\n")
    text = _edit(
        "  seen:\n    description: ids seen\n", "  seen:\n    description: ids seen\n  totals: {}\n", text
    )
    # the dedupe step moves before derive; normalize is removed; a filter step is added
    text = _edit(
        "      - step: normalize\n        fields:\n          id: {type: string, strip: true}\n", "", text
    )
    dedupe = "      - step: dedupe\n        field: id\n        table: seen\n        horizon: 24h\n"
    text = _edit(dedupe, "      - step: filter\n        when: eur > 0\n", text)
    text = _edit("      - step: derive\n", dedupe + "      - step: derive\n", text)
    text = _edit(
        "          - {name: foreign, when: country != 'FR', weight: 0.25}\n",
        "          - {name: night, when: hour < 6, weight: 0.1}\n",
        text,
    )
    got = {(c.kind, c.area, c.message, c.file) for c in _diff(BASE, text)}
    assert got == {
        ("added", "topic", "topic orders.tiny added", "new.yaml"),
        ("added", "table", "table totals added", "new.yaml"),
        ("removed", "step", "step clean.normalize removed", "old.yaml"),
        ("added", "step", "step clean.filter added", "new.yaml"),
        ("moved", "step", "step clean.dedupe moved from position 3 to 1", "new.yaml"),
        (
            "removed",
            "step",
            'step clean.score: rule foreign removed (was {"when":"country != \'FR\'","weight":0.25})',
            "old.yaml",
        ),
        ("added", "step", 'step clean.score: rule night added: {"when":"hour < 6","weight":0.1}', "new.yaml"),
    }
    removed = next(c for c in _diff(BASE, text) if c.message == "step clean.normalize removed")
    assert removed.line == _line(BASE, "step: normalize")  # a removal points at the old file


def test_a_moved_route_is_reported_since_the_first_match_wins():
    big = "      - when: score >= 0.5\n"
    route_text = BASE[BASE.index(big) : BASE.index("      - otherwise: true\n")]
    text = _edit(route_text, "").replace(
        "      - to: orders.clean\n", route_text + "      - to: orders.clean\n"
    )
    (change,) = _diff(BASE, text)
    assert (change.kind, change.area, change.message) == (
        "moved",
        "route",
        "route clean #1 (when score >= 0.5) moved from position 2 to 1",
    )
    assert change.line == _line(text, "score >= 0.5")


def test_nodes_added_removed_and_changed():
    node = "  extra:\n    input: orders.big\n    routes:\n      - to: orders.small\n"
    text = BASE.replace("    errors:\n", "    batch_size: 500\n    errors:\n") + node
    got = {(c.kind, c.message) for c in _diff(BASE, text)}
    assert got == {("added", "node extra added"), ("changed", "node clean: batch_size: 2000 -> 500")}
    assert {(c.kind, c.message, c.file) for c in _diff(text, BASE)} >= {
        ("removed", "node extra removed", "old.yaml")
    }


def test_secrets_from_the_environment_are_never_shown():
    text = _edit("Bearer ${CRM_TOKEN:t1}", "Bearer ${CRM_TOKEN:s3cret-token}")
    text = _edit("${MASK_KEY:k1}", "${MASK_KEY:other-key}", text)
    text = _edit("url: https://crm.example/hook", "url: https://user:pw@crm.example/hook?token=abc", text)
    changes = _diff(BASE, text)
    shown = "\n".join(str(c) for c in changes) + orjson.dumps([c.as_json() for c in changes]).decode()
    assert {c.field for c in changes} == {"to http crm: headers.Authorization", "key", "to http crm: url"}
    for secret in ("s3cret-token", "t1", "other-key", "k1", ":pw@", "abc"):
        assert secret not in shown


def test_json_items_have_stable_keys():
    change = _only(_diff(BASE, _edit("    retention: 7d\n", "    retention: 3d\n")))
    assert change.as_json() == {
        "kind": "changed",
        "area": "topic",
        "subject": "topic orders",
        "field": "retention",
        "old": "7d",
        "new": "3d",
        "file": "new.yaml",
        "line": 10,
        "message": "topic orders: retention: 7d -> 3d",
    }
    orjson.dumps([c.as_json() for c in _diff(BASE, _edit("  orders.clean:\n    partitions: 6\n", ""))])


def test_derived_fields_reordered_is_a_change_since_they_are_computed_in_order():
    text = _edit("          eur: amount * rates[currency]\n          big: eur > limit\n",
                 "          big: eur > limit\n          eur: amount * rates[currency]\n")  # fmt: skip
    change = _only(_diff(BASE, text))
    assert change.message == 'step clean.derive: fields order: ["eur","big"] -> ["big","eur"]'


def test_steps_of_one_kind_are_told_apart_by_what_names_them():
    second = "      - step: dedupe\n        field: email\n        table: emails\n        horizon: 1h\n"
    old = _edit("      - step: score\n", second + "      - step: score\n")
    new = _edit("horizon: 1h", "horizon: 2h", old)
    assert [c.message for c in _diff(old, new)] == ["step clean.dedupe emails: horizon: 1h -> 2h"]


def test_an_external_target_added_or_removed_is_a_target_item_without_its_secrets():
    text = _edit("        to: orders.small\n",
                 "        to:\n          - orders.small\n          - http: {url: 'https://erp.example/x', "
                 "headers: {X-Key: '${ERP_KEY:hush}'}}\n")  # fmt: skip
    change = _only(_diff(BASE, text))
    assert (change.kind, change.area, change.line) == ("added", "target", _line(text, "erp.example"))
    assert change.new == {"http": {**change.new["http"], "headers": {"X-Key": "***"}}}
    assert "hush" not in str(change) and "hush" not in orjson.dumps(change.as_json()).decode()
    removed = _only(_diff(text, BASE))
    assert (removed.kind, removed.file, removed.line) == ("removed", "old.yaml", _line(text, "erp.example"))


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_fraud_topology_with_its_keys_shuffled_has_no_change(rng):
    """Any order of every mapping's keys, re-written as YAML without the comments, is no change
    (a derive step's fields are the one mapping whose order means something: the fraud topology's
    has one field)."""
    text = FRAUD.read_text(encoding="utf-8")
    data = YAML(typ="safe").load(text)

    def shuffled(value):
        if isinstance(value, dict):
            keys = list(value)
            rng.shuffle(keys)
            return {k: shuffled(value[k]) for k in keys}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    out = io.StringIO()
    YAML(typ="safe").dump(shuffled(data), out)
    env = {"STREAM_ORCH_MASK_KEY": "k"}
    old = parse_topology(text, "old.yaml", env)
    assert diff_topologies(old, parse_topology(out.getvalue(), "new.yaml", env)) == []
