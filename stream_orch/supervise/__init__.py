"""``stream-orch run --processes N``: N worker processes of one topology under one supervisor."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stream_orch.settings import Settings


async def run_supervised(
    argv: Sequence[str], processes: int, settings: Settings, stop_timeout_s: float
) -> int:
    """Run ``processes`` members of the command line ``argv`` (``run FILE ...``) until stopped."""
    from stream_orch.supervise.members import plan
    from stream_orch.supervise.supervisor import Supervisor

    plans = plan(argv, processes, settings.state_dir, settings.metrics_port, settings.instance_id)
    supervisor = Supervisor(plans, stop_timeout_s=stop_timeout_s)
    server = None
    if settings.metrics_port:
        from stream_orch.supervise.endpoint import serve

        server = await serve(supervisor, settings.metrics_host, settings.metrics_port)
    print(
        f"stream-orch: supervising {processes} processes ("
        + ", ".join(f"{p.instance_id} in {p.state_dir}" for p in plans)
        + ")",
        file=sys.stderr,
    )
    try:
        return await supervisor.run()
    finally:
        if server is not None:
            await server.stop()
