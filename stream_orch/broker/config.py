"""Renders the broker's ``server.properties`` and log4j2 config from the packaged templates."""

from __future__ import annotations

import os
from importlib import resources

from stream_orch.broker.layout import BrokerLayout


def _template(name: str) -> str:
    return resources.files("stream_orch.broker").joinpath(name).read_text()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def write_configs(
    layout: BrokerLayout, port: int, controller_port: int, secure: dict[str, str] | None = None
) -> None:
    """Write both files on every start so a changed port or path always takes effect; ``secure``:
    the properties of the secure mode (:mod:`stream_orch.broker.secure`), which hold secrets, so
    the file is then readable by its owner only."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    text = _fill(
        _template("server.properties"),
        {"PORT": str(port), "CONTROLLER_PORT": str(controller_port), "DATA_DIR": str(layout.data_dir)},
    )
    if secure is not None:
        from stream_orch.broker.secure import apply_properties

        text = apply_properties(text, secure)
    layout.server_properties.touch(mode=0o600, exist_ok=True)
    os.chmod(layout.server_properties, 0o600 if secure is not None else 0o644)
    layout.server_properties.write_text(text)
    layout.log4j_properties.write_text(
        _fill(_template("log4j2.properties"), {"LOG_FILE": str(layout.server_log)})
    )


def configured_address(layout: BrokerLayout) -> str | None:
    """host:port the broker of this state folder was last started with (its advertised listener)."""
    try:
        text = layout.server_properties.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("advertised.listeners=") and "://" in line:
            return line.split("://", 1)[1].split(",")[0].strip()
    return None
