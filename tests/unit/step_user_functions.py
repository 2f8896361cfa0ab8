"""Functions the python-step unit tests import by ``module:function``."""

from __future__ import annotations


class Flaky(Exception):
    pass


class FlakierStill(Flaky):
    pass


def add_flag(record):
    if record.get("drop"):
        return None
    if record.get("boom") == "retry":
        raise FlakierStill("upstream timeout")
    if record.get("boom"):
        raise ValueError("bad record")
    if record.get("weird"):
        return 42
    record["flag"] = True
    return record


async def add_flag_async(record):
    return add_flag(record)


CALLS = []


def batch_double(records):
    CALLS.append(len(records))
    return [None if r.get("drop") else {**r, "n": r["n"] * 2} for r in records]


async def batch_in_place(records):
    CALLS.append(len(records))
    for r in records:
        r["seen"] = True


def batch_fails(records):
    raise Flaky("service down")
