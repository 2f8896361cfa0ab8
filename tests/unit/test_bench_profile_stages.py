"""benchmarks.profile_stages: a py-spy raw profile summed per stage of the worker's batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.profile_stages import main, stages

LOOP = "<module> (stream-orch:8);run_forever (asyncio/base_events.py:607);Handle._run (asyncio/events.py:80)"
NODE = f"{LOOP};NodeRunner._loop (stream_orch/runtime/node.py:330)"
PROCESS = f"{NODE};NodeRunner._process (runtime/node.py:381);NodePipeline.process (runtime/pipeline.py:140)"
PROFILE = [
    f"{PROCESS};decode_records (runtime/batch.py:149);JsonCodec.decode (codecs/json_codec.py:46) 30",
    f"{PROCESS};Router.route (runtime/routing.py:175);JsonCodec.encode (codecs/json_codec.py:72) 40",
    f"{PROCESS};Router.route (runtime/routing.py:225);Lane.open (runtime/output.py:221) 5",
    f"{LOOP};_send (stream_orch/runtime/output.py:212);_fill (stream_orch/runtime/output.py:238) 10",
    f"{NODE};Prefetch.fetch (runtime/prefetch.py:41);AIOKafkaConsumer.getmany (aiokafka/consumer.py:1) 8",
    f"{NODE} 7",
    f"{LOOP};AtLeastOnce._complete (runtime/delivery.py:194);Sealed.land (state/overlay.py:86) 4",
    f"{LOOP};_run (stream_orch/cli/run.py:1);_find_and_load (<frozen importlib._bootstrap>:1) 100",
    "<module> (stream-orch:8);main (stream_orch/cli/main.py:1);_parser (stream_orch/cli/main.py:2) 50",
    "",
]


def test_each_sample_counts_for_its_first_stage_and_start_up_is_left_out() -> None:
    counted, total = stages(PROFILE)
    assert total == 104  # 30 + 40 + 5 + 10 + 8 + 7 + 4: not the import (100) nor the parser (50)
    assert counted == {
        "decode": 30,
        "route + outbox.add": 45,  # partitioning in a Lane is routing's, not produce's
        "produce (record batches)": 10,
        "fetch (aiokafka)": 8,
        "loop, other": 7,
        "land": 4,  # under the delivery, but its own stage
    }


def test_main_prints_us_per_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "profile.txt"
    path.write_text("\n".join(PROFILE))
    main([str(path), "--cpu-us", "10"])
    out = capsys.readouterr().out
    assert "| route + outbox.add | 43.3 % | 4.33 |" in out  # 45 of 104 samples
    assert "| decode | 28.8 % | 2.88 |" in out


def test_a_missing_file_or_one_without_samples_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"profile_stages: .*nothing\.txt: No such file"):
        main([str(tmp_path / "nothing.txt")])
    empty = tmp_path / "empty.txt"
    empty.write_text(PROFILE[-2] + "\n")
    with pytest.raises(SystemExit, match="no samples inside the event loop"):
        main([str(empty)])
