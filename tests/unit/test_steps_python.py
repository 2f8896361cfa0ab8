"""python: user functions by import path, sync or async, per record or per batch."""

from __future__ import annotations

import pytest
import step_user_functions as user
from step_harness import build, run_step, topology

from stream_orch.steps.common import StepConfigError

# the tests' functions are in tests/unit, on sys.path: listed as a package the topology trusts
USER = topology(python_packages=["step_user_functions"])

RECORDS = [
    {"n": 1},
    {"n": 2, "drop": True},
    {"n": 3, "boom": "retry"},
    {"n": 4, "boom": "x"},
    {"n": 5, "weird": 1},
]


@pytest.mark.parametrize("function", ["step_user_functions:add_flag", "step_user_functions:add_flag_async"])
async def test_per_record_sync_and_async(function):
    step = build({"step": "python", "function": function, "retry_on": ["Flaky"]}, USER)
    out, ctx = await run_step(step, RECORDS)
    assert out == [{"n": 1, "flag": True}]
    assert ctx.drop_reasons == ["python_filtered"]
    assert ctx.retry_reasons == ["FlakierStill"]  # a subclass of a retry_on class
    assert ctx.reject_reasons == [
        "python_error: ValueError: bad record",
        "python_error: returned int, expected a dict or None",
    ]


async def test_not_retried_without_retry_on():
    step = build({"step": "python", "function": "step_user_functions:add_flag"}, USER)
    _, ctx = await run_step(step, [{"boom": "retry"}])
    assert ctx.reject_reasons == ["python_error: FlakierStill: upstream timeout"]


async def test_batch_functions_called_once():
    user.CALLS.clear()
    step = build({"step": "python", "function": "step_user_functions:batch_double", "batch": True}, USER)
    out, ctx = await run_step(step, [{"n": 1}, {"n": 2, "drop": True}, {"n": 3}])
    assert [r["n"] for r in out] == [2, 6] and ctx.drop_reasons == ["python_filtered"]
    step = build({"step": "python", "function": "step_user_functions:batch_in_place", "batch": True}, USER)
    out, _ = await run_step(step, [{"n": 1}, {"n": 2}])
    assert out == [{"n": 1, "seen": True}, {"n": 2, "seen": True}]
    assert user.CALLS == [3, 2]


async def test_batch_exception_applies_to_every_record():
    step = build(
        {
            "step": "python",
            "function": "step_user_functions:batch_fails",
            "batch": True,
            "retry_on": ["Flaky"],
        },
        USER,
    )
    out, ctx = await run_step(step, [{"n": 1}, {"n": 2}])
    assert out == [] and ctx.retry_reasons == ["Flaky", "Flaky"]


def test_bad_import_paths_are_config_errors():
    missing = topology(python_packages=["no_such_module_xyz"])
    with pytest.raises(StepConfigError, match="cannot import 'no_such_module_xyz'"):
        build({"step": "python", "function": "no_such_module_xyz:f"}, missing)
    with pytest.raises(StepConfigError, match="has no attribute 'nope'"):
        build({"step": "python", "function": "step_user_functions:nope"}, USER)
    with pytest.raises(StepConfigError, match="module `step_user_functions` is not in the topology's folder"):
        build({"step": "python", "function": "step_user_functions:add_flag"})  # not listed
