"""The `window` and `join` benchmark contenders compute the right thing (benchmarks/streams_check.py).

Each contender runs once on a small data set against the real broker: every one-minute window per
merchant with the count a reference computes from the input, each once; every payment's outcome
(reconciled, mismatch, unreconciled with its severity) equal to the generator's ground truth, each
payment once. The Quix contenders are skipped without the `bench` extra.
"""

from __future__ import annotations

import pytest

from benchmarks.contenders import BY_NAME
from benchmarks.streams_check import check


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["engine_window", "quix_window", "engine_join", "quix_join"])
async def test_stream_contender_output_equals_reference(kafka_bootstrap: str, name: str) -> None:
    reason = BY_NAME[name].unavailable()
    if reason:
        pytest.skip(reason)
    diff = await check(kafka_bootstrap, name, settle_s=2.0)
    assert diff["ok"], diff
    expected = diff.get("windows", diff.get("payments"))
    assert diff["outputs"] == expected, diff
