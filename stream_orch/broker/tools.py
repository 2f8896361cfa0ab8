"""Finding ``java`` and ``mvn``, with one actionable line when either is missing."""

from __future__ import annotations

import shutil

from stream_orch.errors import UserError

_INSTALL_HINTS = {
    "java": "install Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`)",
    "keytool": "install a Java 17+ JDK or JRE (keytool comes with it)",
    "mvn": "install Maven (e.g. `apt-get install maven`)",
}


def require(tool: str) -> str:
    """Absolute path of ``tool``; a missing tool is a user error, not a crash."""
    path = shutil.which(tool)
    if path is None:
        raise UserError(
            f"`{tool}` not found on PATH: {_INSTALL_HINTS[tool]}, "
            "or run Kafka with Docker instead: `docker compose up -d kafka`"
        )
    return path
