"""The shadow report's join and counts on in-memory records: inputs are joined by lineage, each
gets a route per version, moves and score changes are counted against a brute-force reference,
dead letters new and gone are told apart, only the window both versions processed is compared,
and masked fields never show their values."""

from __future__ import annotations

import random
import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_orch.tools.shadow.compare import DLQ, NONE, Output, Version, compare, quantile

COND = {"fraud.alerts", "account.actions", "fraud.review", "transactions.approved"}
ROUTE_TOPICS = {
    "alert": ["fraud.alerts", "account.actions"],
    "review": ["fraud.review"],
    "approved": ["transactions.approved"],
}
LABEL = {
    "alert": "account.actions+fraud.alerts",
    "review": "fraud.review",
    "approved": "transactions.approved",
    "dlq": DLQ,
    "none": NONE,
}


def outputs(source: tuple[str, int, int], route: str, score: float) -> list[Output]:
    if route == "dlq":
        return [Output("transactions.dlq", source, None, "invalid_field")]
    if route == "none":
        return []
    value = {"txn_id": f"T{source[2]}", "score": score, "email": f"secret{source[2]}"}
    return [Output("transactions.enriched", source, value)] + [
        Output(t, source, value) for t in ROUTE_TOPICS[route]
    ]


def version(plan: dict[tuple[str, int, int], tuple[str, float]], committed: dict) -> Version:
    outs = [o for source, (route, score) in plan.items() for o in outputs(source, route, score)]
    random.Random(1).shuffle(outs)  # the order records are read in does not matter
    return Version(outs, COND, ["score"], committed)


ROUTES = st.sampled_from(["alert", "review", "approved", "dlq", "none"])
SCORES = st.sampled_from([0.0, 0.1, 0.3, 0.55, 0.8, 1.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ROUTES, SCORES, ROUTES, SCORES), min_size=1, max_size=60))
def test_moves_and_score_changes_equal_a_brute_force_count(rows):
    live_plan, new_plan = {}, {}
    for offset, (old_route, old_score, new_route, new_score) in enumerate(rows):
        source = ("transactions", offset % 3, offset)
        live_plan[source] = (old_route, old_score)
        new_plan[source] = (new_route, new_score)
    # the first and last inputs of each partition give the window its ends in both versions
    committed = {("transactions", p): len(rows) + 10 for p in range(3)}
    expected_sources = {s for s, (a, _) in live_plan.items()} | set(new_plan)
    kept = [s for s in expected_sources if live_plan[s][0] != "none" or new_plan[s][0] != "none"]
    # a partition where one version left nothing at all has no window
    parts_live = {s[1] for s in kept if live_plan[s][0] != "none"}
    parts_new = {s[1] for s in kept if new_plan[s][0] != "none"}
    both = parts_live & parts_new
    firsts = {
        p: max(min(s[2] for s in kept if s[1] == p and v[s][0] != "none") for v in (live_plan, new_plan))
        for p in both
    }
    window = [s for s in kept if s[1] in both and s[2] >= firsts[s[1]]]
    report = compare(version(live_plan, committed), version(new_plan, committed), examples=3)
    moves = Counter((LABEL[live_plan[s][0]], LABEL[new_plan[s][0]]) for s in window)
    expected = {k: n for k, n in moves.items() if k[0] != k[1]}
    assert {(m["from"], m["to"]): m["count"] for m in report["moves"]} == expected
    assert report["window"]["inputs"] == len(window)
    assert report["routes"] == {
        label: {
            "live": Counter(LABEL[live_plan[s][0]] for s in window)[label],
            "shadow": Counter(LABEL[new_plan[s][0]] for s in window)[label],
        }
        for label in {LABEL[live_plan[s][0]] for s in window} | {LABEL[new_plan[s][0]] for s in window}
    }
    scored = [
        s for s in window if live_plan[s][0] not in ("dlq", "none") and new_plan[s][0] not in ("dlq", "none")
    ]
    deltas = sorted(round(new_plan[s][1] - live_plan[s][1], 9) for s in scored)
    if deltas:
        assert report["score"]["compared"] == len(deltas)
        assert report["score"]["unchanged"] == deltas.count(0)
        assert report["score"]["quantiles"]["p50"] == quantile(deltas, 0.5)
        assert sum(b["count"] for b in report["score"]["histogram"]) == len(deltas) - deltas.count(0)
    else:
        assert report["score"] is None
    newly = sum(1 for s in window if new_plan[s][0] == "dlq" and live_plan[s][0] != "dlq")
    gone = sum(1 for s in window if live_plan[s][0] == "dlq" and new_plan[s][0] != "dlq")
    assert sum(report["dead_letters"]["new"].values()) == newly
    assert sum(report["dead_letters"]["no_longer"].values()) == gone
    assert len(report["examples"]) == min(3, sum(expected.values()))


def test_only_inputs_both_versions_processed_are_compared():
    # live processed 0..99 (committed 100); the shadow started at 40 and has committed 70
    live = {("t", 0, o): ("approved", 0.1) for o in range(100)}
    new = {("t", 0, o): ("review", 0.6) for o in range(40, 75)}  # 70..74 not committed yet
    report = compare(version(live, {("t", 0): 100}), version(new, {("t", 0): 70}))
    assert report["window"] == {"inputs": 30, "partitions": {"t[0]": [40, 70]}}
    assert report["moves"] == [{"from": "transactions.approved", "to": "fraud.review", "count": 30}]
    assert report["score"]["quantiles"]["p0"] == report["score"]["quantiles"]["p100"] == 0.5


def test_an_input_seen_by_one_version_only_moves_from_or_to_none():
    live = {("t", 0, 0): ("approved", 0.1), ("t", 0, 1): ("approved", 0.1), ("t", 0, 2): ("none", 0)}
    new = {("t", 0, 0): ("approved", 0.1), ("t", 0, 1): ("none", 0), ("t", 0, 2): ("review", 0.5)}
    report = compare(version(live, {("t", 0): 3}), version(new, {("t", 0): 3}))
    assert {(m["from"], m["to"]) for m in report["moves"]} == {
        ("transactions.approved", NONE),
        (NONE, "fraud.review"),
    }


def test_examples_show_lineage_changed_fields_and_never_masked_values():
    live = {("t", 2, 7): ("approved", 0.1)}
    new = {("t", 2, 7): ("review", 0.6)}
    live_v, new_v = version(live, {("t", 2): 8}), version(new, {("t", 2): 8})
    for out in new_v.outputs:
        out.value["email"] = "changed@example.com"
    report = compare(live_v, new_v, examples=5, masked=frozenset({"email"}))
    [example] = report["examples"]
    assert example["source"] == {"topic": "t", "partition": 2, "offset": 7}
    assert example["changed"]["score"] == [0.1, 0.6]
    assert example["changed"]["email"] == ["(masked)", "(masked)"]
    assert "changed@example.com" not in repr(report)
    assert compare(live_v, new_v, examples=0)["examples"] == []


def test_the_text_report_lists_routes_moves_and_examples():
    from stream_orch.tools.shadow.report import as_text

    live = {("t", 0, o): ("approved", 0.1) for o in range(10)}
    new = {**live, ("t", 0, 3): ("review", 0.6), ("t", 0, 4): ("dlq", 0)}
    report = compare(version(live, {("t", 0): 10}), version(new, {("t", 0): 10}), examples=1)
    report.update(versions={"live": "fraud 1", "shadow": "fraud 2"}, inputs=["t"])
    text = as_text(report)
    assert "compared: 10 inputs of t" in text
    assert re.search(r"\n  transactions\.approved +10 +8\n", text)
    assert "moves (2 inputs):" in text
    assert "1  transactions.approved -> dlq" in text and "1  transactions.approved -> fraud.review" in text
    assert "newly dead-lettered: 1 (invalid_field)" in text
    assert "t[0]@3: transactions.approved -> fraud.review" in text and "score: 0.1 -> 0.6" in text
