"""Does a Kafka broker answer at an address? Asked with a real metadata request, not a port check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient

# Connection failures are expected while polling a starting broker; without a handler,
# Python's last-resort handler would print each one to stderr.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())


async def broker_answers(
    bootstrap: str, timeout_s: float = 3.0, security: dict[str, Any] | None = None
) -> bool:
    """True when the broker returns metadata listing at least one broker; ``security``: the
    clients' security arguments (a secure broker's)."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **(security or {})
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


async def coordinators_ready(
    bootstrap: str, timeout_s: float = 3.0, security: dict[str, Any] | None = None
) -> bool:
    """True when the group and the transaction coordinator can be found.

    On a fresh broker ``__consumer_offsets`` and ``__transaction_state`` are only created by the
    first FindCoordinator request, and until they exist consumer groups fail with
    COORDINATOR_NOT_AVAILABLE. Asking here creates them, so ``up`` returns a broker ready for both.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **(security or {})
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.find_coordinator("stream-orch-readiness", 0), timeout_s)
        await asyncio.wait_for(admin.find_coordinator("stream-orch-readiness", 1), timeout_s)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
