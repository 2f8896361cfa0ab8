"""Credentials never reach a log line: user:password@ and token-like query parameters of every URL
in a text are replaced by ``***``; the rest of the URL stays readable."""

from __future__ import annotations

import pytest

from stream_orch.redact import redact_urls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:s3cret@am:9093/api/v2/alerts", "http://***@am:9093/api/v2/alerts"),
        ("https://ghp_tok3n@example.com/x", "https://***@example.com/x"),
        ("http://u:p@ss:w@rd@host/", "http://***@host/"),  # an unescaped @ in the password
        (
            "https://am/api?token=abc&x=1&api_key=k&Signature=s#frag",
            "https://am/api?token=***&x=1&api_key=***&Signature=***#frag",
        ),
        ("https://am/api?access_token=abc", "https://am/api?access_token=***"),
        (
            "cannot reach http://a:b@h1/ and https://c:d@h2/?password=e; retrying",
            "cannot reach http://***@h1/ and https://***@h2/?password=***; retrying",
        ),
        ("sasl_ssl://user:pw@broker:9093,broker2:9093", "sasl_ssl://***@broker:9093,broker2:9093"),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:9093/api/v2/alerts",
        "https://am/api/v2/alerts?filter=alertname&page=2",
        "broker1:9092,broker2:9092",
        "mail me at someone@example.com",  # not a URL
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact_urls(text) == text
