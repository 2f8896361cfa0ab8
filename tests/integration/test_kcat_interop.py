"""Interoperability with kcat (librdkafka), a client this project did not write."""

from __future__ import annotations

import shutil

import orjson
import pytest
from kafka_helpers import create_topic, run_cli, run_process

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)"),
]


async def kcat(*args: str, input: bytes | None = None, timeout: float = 30.0) -> str:
    code, out, err = await run_process(["kcat", *args], input=input, timeout=timeout)
    assert code == 0, err
    return out


async def test_kcat_lists_the_broker(kafka_bootstrap: str) -> None:
    out = await kcat("-b", kafka_bootstrap, "-L", "-m", "10")
    assert f"at {kafka_bootstrap}" in out


async def test_record_produced_by_stream_orch_is_read_by_kcat(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    record = {"account_id": "acct-7", "amount": 12.5}
    code, _, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "produce", unique_topic, "--key-field", "account_id",
        input=orjson.dumps(record) + b"\n",
    )  # fmt: skip
    assert code == 0, err
    out = await kcat("-b", kafka_bootstrap, "-C", "-t", unique_topic, "-o", "beginning", "-e", "-q",
                     "-f", "%k\t%s\n")  # fmt: skip
    key, value = out.rstrip("\n").split("\t")
    assert key == "acct-7"
    assert orjson.loads(value) == record


async def test_record_produced_by_kcat_is_shown_by_tail(kafka_bootstrap: str, unique_topic: str) -> None:
    await kcat("-b", kafka_bootstrap, "-P", "-t", unique_topic, "-K", "|", "-H", "source=kcat",
               input=b'user-1|{"event": "login"}\n')  # fmt: skip
    code, out, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "tail", unique_topic, "--from-beginning", "--max", "1",
        "--timeout", "20",
    )  # fmt: skip
    assert code == 0, err
    shown = orjson.loads(out)
    assert shown["key"] == "user-1"
    assert shown["value"] == {"event": "login"}
    assert shown["headers"] == {"source": "kcat"}
    assert (shown["topic"], shown["partition"], shown["offset"]) == (unique_topic, 0, 0)


async def test_keyed_partitioning_matches_librdkafka_murmur2(kafka_bootstrap: str, make_topic) -> None:
    """The same keys land in the same partitions whether stream-orch or a murmur2 client writes them."""
    ours, theirs = make_topic("ours"), make_topic("kcat")
    for topic in (ours, theirs):
        await create_topic(kafka_bootstrap, topic, partitions=8)
    keys = [f"card-{i}" for i in range(60)]
    code, _, err = await run_cli(
        "--bootstrap-servers", kafka_bootstrap, "produce", ours, "--key-field", "k",
        input=b"".join(orjson.dumps({"k": k}) + b"\n" for k in keys),
    )  # fmt: skip
    assert code == 0, err
    await kcat("-b", kafka_bootstrap, "-P", "-t", theirs, "-K", "|", "-X", "topic.partitioner=murmur2",
               input="".join(f"{k}|x\n" for k in keys).encode())  # fmt: skip

    async def partition_of_key(topic: str) -> dict[str, str]:
        out = await kcat("-b", kafka_bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                         "-f", "%k %p\n")  # fmt: skip
        return dict(line.split() for line in out.splitlines())

    mine, kcats = await partition_of_key(ours), await partition_of_key(theirs)
    assert len(mine) == len(keys)
    assert mine == kcats
    assert len(set(mine.values())) > 1
