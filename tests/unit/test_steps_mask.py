"""mask (rule h): the email as a salted SHA-256 hex digest, the name left out."""

from __future__ import annotations

import hashlib

from step_harness import build, run_step

from stream_orch.steps.mask import salted_sha256


async def test_hash_and_drop():
    step = build(
        {"step": "mask", "salt": "pepper", "fields": {"email": "hash", "name": "drop", "phone": "hash"}}
    )
    out, _ = await run_step(
        step, [{"email": "jane@example.com", "name": "Jane", "phone": 4915100}, {"email": None}]
    )
    expected = hashlib.sha256(b"pepper" + b"jane@example.com").hexdigest()
    assert out[0] == {"email": expected, "phone": hashlib.sha256(b"pepper4915100").hexdigest()}
    assert salted_sha256("pepper", "jane@example.com") == expected
    assert len(expected) == 64 and expected == expected.lower()
    assert out[1] == {"email": None}


async def test_no_salt_and_unicode():
    step = build({"step": "mask", "fields": {"email": "hash"}})
    out, _ = await run_step(step, [{"email": "zoë@example.com"}])
    assert out[0]["email"] == hashlib.sha256("zoë@example.com".encode()).hexdigest()
