"""Argument errors are one line (never the usage block, never a traceback); connection flags go
before or after the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_orch.cli.main import main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["produce"], "the following arguments are required: topic"),
        (["produce", "t", "--rate", "0"], "must be greater than 0"),
        (["produce", "t", "--rate", "fast"], "not a number"),
        (["tail", "t", "--max", "-1"], "must be greater than 0"),
        (["tail", "t", "--timeout", "x"], "not a number"),
        (["kafka"], "required: ACTION"),
        (["kafka", "explode"], "invalid choice"),
    ],
)
def test_argument_errors(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err


def test_produce_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["--bootstrap-servers", "127.0.0.1:1", "produce", "t", "--file", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"stream-orch: error: cannot read {missing}: No such file or directory"


def test_produce_unknown_schema_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bootstrap-servers", "127.0.0.1:1", "produce", "t", "--schema", "no_such_schema"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown schema 'no_such_schema'" in err and "\n" not in err


def test_status_of_a_stopped_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--kafka-port", "1", "--state-dir", str(tmp_path), "kafka", "status"])
    assert code == 3
    assert capsys.readouterr().out.strip() == "Kafka stopped (address 127.0.0.1:1)"


def test_an_argument_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tail"])
    err = capsys.readouterr().err
    assert err == (
        "stream-orch tail: error: the following arguments are required: topic (see stream-orch tail --help)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--kafka-port", "1", "--state-dir", "{d}", "kafka", "status"],
        ["kafka", "--kafka-port", "1", "--state-dir", "{d}", "status"],
        ["kafka", "status", "--kafka-port", "1", "--state-dir", "{d}"],
    ],
)
def test_connection_options_go_before_or_after_the_command(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.format(d=tmp_path) for a in argv]) == 3
    assert capsys.readouterr().out.strip() == "Kafka stopped (address 127.0.0.1:1)"


def test_an_option_after_the_command_wins_over_one_before(tmp_path: Path, capsys) -> None:
    argv = ["--kafka-port", "2", "--state-dir", str(tmp_path), "kafka", "status", "--kafka-port", "1"]
    assert main(argv) == 3
    assert capsys.readouterr().out.strip() == "Kafka stopped (address 127.0.0.1:1)"
