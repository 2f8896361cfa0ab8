"""When a node that failed starts over, and when it gives up its place in the group.

Restarts back off 1, 2, 4, 5, 5 ... s: while the broker is away a restart is a refused
connection (cheap), and once it is back the node should not sleep long before it notices. A node
that made progress since its last start, or ran for a minute, begins a new incident. Starting
over inside the group that keeps failing for ``REJOIN_AFTER_S`` re-joins with a new consumer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_BACKOFF_S = 5.0
RESET_AFTER_S = 60.0
REJOIN_AFTER_S = 30.0


@dataclass
class RestartPolicy:
    backoff_s: float = 1.0
    failing_since: float | None = None

    def failed(self, *, progressed: bool, ran_s: float) -> tuple[float, bool]:
        """A run failed: (seconds to wait, whether to re-join the group with a new consumer)."""
        now = time.monotonic()
        if progressed or ran_s > RESET_AFTER_S:
            self.backoff_s, self.failing_since = 1.0, None  # it worked since its last start
        if self.failing_since is None:
            self.failing_since = now
        delay = self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        return delay, now - self.failing_since > REJOIN_AFTER_S

    def recovered(self) -> None:
        self.backoff_s = 1.0
