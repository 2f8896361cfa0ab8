"""The secure broker's configuration, without starting it: no plaintext client listener, ACLs
enforced with no default allow, the admin as the only super user, secrets only in 0600 files."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from stream_orch.broker.config import write_configs
from stream_orch.broker.layout import BrokerLayout
from stream_orch.broker.manager import BrokerManager
from stream_orch.broker.secure import SecureLayout, apply_properties, client_settings, secure_properties
from stream_orch.errors import UserError


def _props(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")]
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "a property set twice"
    return dict(pairs)


def _secure_layout(tmp_path: Path) -> SecureLayout:
    layout = SecureLayout(tmp_path / "kafka" / "secure")
    layout.root.mkdir(parents=True)
    (layout.root / "admin.password").write_text("admin-secret\n")
    (layout.root / "store.password").write_text("store-secret\n")
    return layout


def test_the_secure_properties_replace_the_plaintext_listener(tmp_path: Path) -> None:
    secure = secure_properties(_secure_layout(tmp_path), 9192, 9193)
    layout = BrokerLayout.under(tmp_path)
    write_configs(layout, 9192, 9193, secure)
    props = _props(layout.server_properties.read_text())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert "PLAINTEXT://" not in props["listeners"] + props["advertised.listeners"]
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert props["auto.create.topics.enable"] == "false"
    assert layout.server_properties.stat().st_mode & 0o777 == 0o600  # it holds the secrets


def test_plaintext_configs_stay_as_they_were(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    write_configs(layout, 9092, 9093)
    props = _props(layout.server_properties.read_text())
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert "authorizer.class.name" not in props


def test_apply_properties_replaces_and_adds() -> None:
    out = apply_properties("# a=0\na=1\nb=2\n", {"a": "9", "c": "3"})
    assert _props(out) == {"a": "9", "b": "2", "c": "3"} and "# a=0" in out


def test_what_up_prints_names_the_password_file_not_the_password(tmp_path: Path) -> None:
    text = "\n".join(client_settings(_secure_layout(tmp_path), "127.0.0.1:9192"))
    assert "admin-secret" not in text and "admin.password" in text and "SASL_SSL" in text


def test_a_plaintext_state_folder_is_not_started_secure(tmp_path: Path) -> None:
    layout = BrokerLayout.under(tmp_path)
    layout.data_dir.mkdir(parents=True)
    layout.formatted_marker.write_text("version=1\n")  # formatted by a plaintext `kafka up`
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = BrokerManager(tmp_path, port=port, controller_port=port, secure=True, say=lambda _m: None)
    with pytest.raises(UserError, match="formatted without --secure"):
        asyncio.run(manager.up(timeout_s=1))
