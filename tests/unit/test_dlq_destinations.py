"""Where `dlq replay --to original` may write (reliability/destinations.py), and the CLI's one-line
refusals; the replay itself on the real broker: tests/integration/test_dlq_replay_destinations.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stream_orch.cli.main import main
from stream_orch.errors import UserError
from stream_orch.reliability import destinations as D
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "topologies" / "fraud_detection.yaml"
RECONCILIATION = REPO / "topologies" / "reconciliation.yaml"


def test_a_topology_s_origins_are_the_inputs_retry_and_joined_topics_of_the_dlq_s_nodes() -> None:
    fraud = load_topology(FRAUD, env={}).spec
    assert D.topology_origins(fraud, "transactions.dlq") == {
        "transactions",
        "transactions.retry.1",
        "transactions.retry.2",
        "transactions.retry.3",
    }
    assert D.topology_origins(fraud, "customers.dlq") == {"customers"}
    recon = load_topology(RECONCILIATION, env={}).spec
    assert D.topology_origins(recon, "payments.dlq") >= {"payments", "settlements"}


def test_a_topic_that_is_not_a_dlq_of_the_topology_is_refused() -> None:
    fraud = load_topology(FRAUD, env={}).spec
    with pytest.raises(
        UserError, match=r"fraud.alerts is not a dead-letter topic of topology fraud_detection"
    ):
        D.topology_origins(fraud, "fraud.alerts")


def test_without_a_topology_the_default_dlq_name_gives_its_input() -> None:
    assert D.name_origins("payments.dlq") == {"payments"}
    for name in ("failed", ".dlq", "payments.dlq.old"):
        with pytest.raises(UserError, match="--topology FILE"):
            D.name_origins(name)


def test_forged_names_are_shown_as_topic_names_or_a_placeholder_and_their_count_is_bounded() -> None:
    refused: Counter[str] = Counter()
    D.count_refused(refused, "evil\n[ERROR] forged log line")
    for i in range(3 * D.MAX_REFUSED_NAMES):
        D.count_refused(refused, f"t{i}")
    assert refused[D.NOT_A_TOPIC] == 1
    assert len(refused) == D.MAX_REFUSED_NAMES + 1 and refused[D.OTHERS] == 2 * D.MAX_REFUSED_NAMES + 1
    assert all("\n" not in line for line in D.plan_lines("x.dlq", Counter(x=1), refused, {"x"}, False))


def test_plan_lines_one_per_target_and_one_for_the_skipped() -> None:
    lines = D.plan_lines(
        "x.dlq", Counter({"x": 3, "x.retry.1": 1}), Counter({"y": 2}), {"x", "x.retry.1"}, False
    )
    assert lines == [
        "replaying 3 dead letters of x.dlq to x",
        "replaying 1 dead letters of x.dlq to x.retry.1",
        "skipping 2 dead letters of x.dlq whose so.error.topic is not one of x, x.retry.1: y (2)",
    ]
    assert D.plan_lines("x.dlq", Counter(), Counter(), {"x"}, True) == ["nothing to replay from x.dlq"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["dlq", "replay", "fraud.alerts", "--topology", str(FRAUD)],
            "fraud.alerts is not a dead-letter topic of topology fraud_detection (its dead-letter topics: "
            "customers.dlq, transactions.dlq)",
        ),
        (
            ["dlq", "replay", "transactions.dlq", "--topology", str(FRAUD), "--to", "elsewhere"],
            "--topology: only for --to original (--to TOPIC names the target itself)",
        ),
    ],
)
def test_the_cli_refuses_in_one_line_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--bootstrap-servers", "127.0.0.1:1", *argv]) != 0
    assert capsys.readouterr().err == f"stream-orch: error: {message}\n"
