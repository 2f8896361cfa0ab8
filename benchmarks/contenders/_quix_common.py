"""The Quix Streams application every Quix contender runs: the harness's broker, group and state
folder, reading from the beginning, quiet logs."""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application

from benchmarks import env


def application(**overrides: Any) -> Application:
    return Application(
        broker_address=env.bootstrap(),
        consumer_group=env.get(env.GROUP),
        auto_offset_reset="earliest",
        state_dir=env.get(env.STATE_DIR, "/tmp/bench-quix"),
        loglevel=logging.WARNING,
        **overrides,
    )
