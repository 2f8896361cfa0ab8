"""Settings: environment, flags, the aiokafka arguments they produce, and that secrets stay secret."""

from __future__ import annotations

import json

import pytest

from stream_orch.cli.main import main, settings_from_args
from stream_orch.errors import UserError
from stream_orch.settings import Settings


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_ORCH_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("STREAM_ORCH_KAFKA_PORT", "19092")
    settings = Settings()
    assert settings.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.kafka_port == 19092


def test_sasl_arguments_and_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_ORCH_SASL_PASSWORD", "hunter2")
    settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="u")
    args = settings.kafka_client_args()
    assert args["sasl_mechanism"] == "SCRAM-SHA-512"
    assert args["sasl_plain_username"] == "u" and args["sasl_plain_password"] == "hunter2"
    assert "hunter2" not in json.dumps(settings.redacted())
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_plaintext_has_no_security_arguments() -> None:
    args = Settings().kafka_client_args()
    assert args["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in args and "ssl_context" not in args


def test_bad_setting_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kafka-port", "99999", "kafka", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stream-orch: error: invalid setting kafka_port")
    assert "\n" not in err


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setenv("STREAM_ORCH_BOOTSTRAP_SERVERS", "from-env:9092")
    args = argparse.Namespace(setting_bootstrap_servers="from-flag:9092")
    assert settings_from_args(args).bootstrap_servers == "from-flag:9092"
    with pytest.raises(UserError):
        settings_from_args(argparse.Namespace(setting_security_protocol="CARRIER_PIGEON"))
