"""`--from-time` takes a duration back from now or an ISO time (UTC unless it names its offset);
anything else, or `--from-time` without `--shadow`, is one line, not a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream_orch.cli.argtypes import past_time_ms
from stream_orch.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_a_duration_is_that_long_ago():
    before = int(time.time() * 1000)
    at = past_time_ms("2h")
    after = int(time.time() * 1000)
    assert before - 7_200_000 <= at <= after - 7_200_000


def test_an_iso_time_is_utc_unless_it_says_otherwise():
    expected = int(datetime(2026, 12, 3, 8, 0, tzinfo=UTC).timestamp() * 1000)
    assert past_time_ms("2026-12-03T08:00:00Z") == expected
    assert past_time_ms("2026-12-03T08:00:00") == expected
    assert past_time_ms("2026-12-03T09:00:00+01:00") == expected


@pytest.mark.parametrize("text", ["yesterday", "2", "-2h", "2026-13-01"])
def test_anything_else_is_refused(text: str):
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration or an ISO time"):
        past_time_ms(text)


def test_from_time_without_shadow_is_one_line(capsys: pytest.CaptureFixture[str]):
    code = main(["run", str(ROOT / "topologies" / "fraud_detection.yaml"), "--from-time", "2h"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().count("\n") == 0 and "--from-time: only with --shadow" in err


def test_a_bad_from_time_is_one_line(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        main(["run", "x.yaml", "--shadow", "--from-time", "soon"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.strip().count("\n") == 0 and "--from-time" in err


def test_a_rate_limit_spaces_batches_and_saves_nothing_up():
    from stream_orch.runtime.pacing import RateLimit

    limit = RateLimit(1000.0)
    assert limit.delay(500, now=10.0) == pytest.approx(0.5)  # 500 records at 1000/s: 0.5 s
    assert limit.delay(500, now=10.5) == pytest.approx(0.5)  # the next slot follows on
    assert limit.delay(100, now=20.0) == pytest.approx(0.1)  # ten idle seconds are not a burst
    assert limit.delay(2000, now=20.05) == pytest.approx(2.05)  # a batch ahead of its slot waits longer
    assert RateLimit(None).delay(10**6, now=0.0) == 0.0


def test_shadow_rate_without_shadow_is_one_line(capsys: pytest.CaptureFixture[str]):
    code = main(["run", str(ROOT / "topologies" / "fraud_detection.yaml"), "--shadow-rate", "500"])
    err = capsys.readouterr().err
    assert code != 0 and err.strip().count("\n") == 0 and "--shadow-rate: only with --shadow" in err


@pytest.mark.parametrize("action", ["report", "delete"])
def test_no_kafka_is_one_line(action: str):
    # in a process of its own: an earlier test's `run` set up logging to a stream pytest has closed
    fraud = str(ROOT / "topologies" / "fraud_detection.yaml")
    cmd = [
        sys.executable,
        "-m",
        "stream_orch.cli.main",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "shadow",
        action,
    ]
    done = subprocess.run([*cmd, fraud], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "cannot reach Kafka at 127.0.0.1:1" in done.stderr


def test_shadow_without_an_action_says_what_to_do(capsys: pytest.CaptureFixture[str]):
    assert main(["shadow"]) == 2
    assert "shadow report FILE" in capsys.readouterr().err
