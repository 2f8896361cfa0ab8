"""mask (rule h): the email as an HMAC-SHA256 hex digest under a secret key, the name left out;
without a key the public demo key, and one warning that names the variable (never the key)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from pydantic import ValidationError
from step_harness import build, run_step

from stream_orch.steps import mask
from stream_orch.steps.mask import DEMO_KEY, KEY_ENV, hmac_sha256
from stream_orch.topology.models import MaskStep


def _hmac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


async def test_hash_is_hmac_sha256_under_the_key_and_drop_removes():
    step = build(
        {"step": "mask", "key": "pepper", "fields": {"email": "hash", "name": "drop", "phone": "hash"}}
    )
    out, _ = await run_step(
        step, [{"email": "jane@example.com", "name": "Jane", "phone": 4915100}, {"email": None}]
    )
    expected = _hmac(b"pepper", "jane@example.com")
    assert out[0] == {"email": expected, "phone": _hmac(b"pepper", "4915100")}
    assert expected != hashlib.sha256(b"pepper" + b"jane@example.com").hexdigest()  # not salt||value
    assert hmac_sha256("pepper", "jane@example.com") == expected
    assert len(expected) == 64 and expected == expected.lower()
    assert out[1] == {"email": None}


async def test_without_a_key_the_demo_key_and_one_warning_naming_the_variable(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(mask, "_warned", False)  # once per process: this test sees the first
    with caplog.at_level(logging.WARNING, logger="stream_orch.steps.mask"):
        step = build({"step": "mask", "fields": {"email": "hash"}})
        build({"step": "mask", "key": "", "fields": {"email": "hash"}})  # another node: no second line
    out, _ = await run_step(step, [{"email": "zoë@example.com"}])
    assert out[0]["email"] == _hmac(DEMO_KEY.encode(), "zoë@example.com")
    [warning] = [r for r in caplog.records if r.name == "stream_orch.steps.mask"]
    assert warning.levelno == logging.WARNING
    assert KEY_ENV in warning.getMessage() and "demo key" in warning.getMessage()
    assert DEMO_KEY not in warning.getMessage()


async def test_a_key_gives_no_warning(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(mask, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="stream_orch.steps.mask"):
        build({"step": "mask", "key": "s3cret", "fields": {"email": "hash"}})
    assert [r for r in caplog.records if r.name == "stream_orch.steps.mask"] == []


def test_the_old_salt_is_refused_with_what_replaces_it():
    with pytest.raises(ValidationError, match=r"`salt` is replaced by `key`.*HMAC-SHA256"):
        MaskStep.model_validate({"step": "mask", "salt": "x", "fields": {"email": "hash"}})


@pytest.mark.parametrize("key", ["k", "ключ-ü", "x" * 64, "y" * 65, "z" * 200])
async def test_the_digest_is_the_standard_hmac_for_any_key_length(key: str):
    step = build({"step": "mask", "key": key, "fields": {"email": "hash"}})
    out, _ = await run_step(step, [{"email": "jane@example.com"}, {"email": 42}])
    assert [r["email"] for r in out] == [_hmac(key.encode(), "jane@example.com"), _hmac(key.encode(), "42")]


async def test_repeated_values_get_the_same_digests_as_fresh_ones(monkeypatch: pytest.MonkeyPatch):
    """Digests are kept per step for values that come back; with more values than it keeps
    (3 here), and across two steps with their own keys, each digest is still the HMAC."""
    monkeypatch.setattr(mask, "_DIGESTS_KEPT", 3)
    steps = {
        key: build({"step": "mask", "key": key, "fields": {"email": "hash", "alt": "hash"}}) for key in "ab"
    }
    values = [f"user{i % 5}@example.com" for i in range(12)]
    for key, step in steps.items():
        for start in range(0, len(values), 4):
            batch = [{"email": v, "alt": v} for v in values[start : start + 4]]
            out, _ = await run_step(step, batch)
            expected = [_hmac(key.encode(), v) for v in values[start : start + 4]]
            assert [r["email"] for r in out] == expected and [r["alt"] for r in out] == expected


async def test_a_full_digest_cache_keeps_its_newer_half(monkeypatch: pytest.MonkeyPatch):
    """With more values than it keeps, the step forgets the values hashed longest ago and keeps
    the newer half: the cache never grows past its bound and recent values stay hits."""
    monkeypatch.setattr(mask, "_DIGESTS_KEPT", 4)
    step = build({"step": "mask", "key": "k", "fields": {"email": "hash"}})
    values = [f"user{i}@example.com" for i in range(5)]
    out, _ = await run_step(step, [{"email": v} for v in values])
    assert [r["email"] for r in out] == [_hmac(b"k", v) for v in values]
    # four kept, then the fifth value made room by forgetting the two oldest
    assert list(step._digests) == values[2:]
