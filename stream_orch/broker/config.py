"""Renders the broker's ``server.properties`` and log4j2 config from the packaged templates."""

from __future__ import annotations

from importlib import resources

from stream_orch.broker.layout import BrokerLayout


def _template(name: str) -> str:
    return resources.files("stream_orch.broker").joinpath(name).read_text()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def write_configs(layout: BrokerLayout, port: int, controller_port: int) -> None:
    """Write both files on every start so a changed port or path always takes effect."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.server_properties.write_text(
        _fill(
            _template("server.properties"),
            {"PORT": str(port), "CONTROLLER_PORT": str(controller_port), "DATA_DIR": str(layout.data_dir)},
        )
    )
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
        if line.startswith("advertised.listeners=PLAINTEXT://"):
            return line.removeprefix("advertised.listeners=PLAINTEXT://").split(",")[0].strip()
    return None
