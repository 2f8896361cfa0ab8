"""The secure mode of the local broker (``stream-orch kafka up --secure``): a local CA and a broker
certificate, the admin's credentials, and the properties of a SASL_SSL listener with SCRAM-SHA-512
and the StandardAuthorizer (no ACL found: denied).

Certificates are made with Java's ``keytool``: the broker needs Java anyway, and keytool writes the
PKCS12 stores the broker reads and the PEM CA that Python clients trust, so no new Python
dependency. Every secret (store and admin passwords) is random, kept in a file readable by the
owner only under ``<state>/kafka/secure``, and passed to keytool through the environment, never
on a command line.

The secure broker has no plaintext client listener: a client that is not authenticated has no way
in. Its controller listener (127.0.0.1 only) takes SASL PLAIN from the admin, the one principal
that the broker itself uses to talk to its controller.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream_orch.errors import UserError

ADMIN_USER = "admin"
MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_STORE_ENV = "STREAM_ORCH_KEYTOOL_STOREPASS"


@dataclass(frozen=True)
class SecureLayout:
    """Files of the secure mode under ``<state>/kafka/secure``."""

    root: Path

    @property
    def ca_pem(self) -> Path:
        """The CA certificate clients trust (STREAM_ORCH_SSL_CAFILE)."""
        return self.root / "ca.pem"

    @property
    def ca_store(self) -> Path:
        return self.root / "ca.p12"

    @property
    def keystore(self) -> Path:
        return self.root / "broker.p12"

    @property
    def truststore(self) -> Path:
        return self.root / "truststore.p12"

    @property
    def store_password_file(self) -> Path:
        return self.root / "store.password"

    @property
    def admin_password_file(self) -> Path:
        """The admin's password (super user): ``STREAM_ORCH_SASL_PASSWORD=$(cat this)``."""
        return self.root / "admin.password"

    def exists(self) -> bool:
        return self.admin_password_file.is_file()

    def admin_password(self) -> str:
        try:
            return self.admin_password_file.read_text().strip()
        except OSError:
            raise UserError(
                f"no secure local broker under {self.root.parent}: "
                "start it with `stream-orch kafka up --secure`"
            ) from None


def _secret_file(path: Path) -> str:
    """The secret kept in ``path``; a new random one on first use (mode 0600)."""
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def ensure_certificates(layout: SecureLayout, keytool: str) -> None:
    """First start only: a CA, a broker certificate it signs (for 127.0.0.1 and localhost), the
    broker's key and trust stores and the CA as PEM for clients."""
    layout.root.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o700)
    _secret_file(layout.admin_password_file)
    if layout.ca_pem.is_file() and layout.keystore.is_file() and layout.truststore.is_file():
        return
    for stale in (layout.ca_pem, layout.ca_store, layout.keystore, layout.truststore):
        stale.unlink(missing_ok=True)
    password = _secret_file(layout.store_password_file)
    env = {**os.environ, _STORE_ENV: password}
    store = ["-storetype", "PKCS12", "-storepass:env", _STORE_ENV]
    csr, cert = layout.root / "broker.csr", layout.root / "broker.pem"
    steps = [
        ["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
         "-dname", "CN=stream-orch local CA", "-ext", "bc:c", "-keystore", str(layout.ca_store), *store],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", str(layout.ca_store), *store,
         "-file", str(layout.ca_pem)],
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
         "-dname", "CN=localhost", "-keystore", str(layout.keystore), *store],
        ["-certreq", "-alias", "broker", "-keystore", str(layout.keystore), *store, "-file", str(csr)],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", str(layout.ca_store), *store,
         "-infile", str(csr), "-outfile", str(cert), "-validity", "3650",
         "-ext", "SAN=ip:127.0.0.1,dns:localhost"],
        ["-importcert", "-noprompt", "-alias", "ca", "-keystore", str(layout.keystore), *store,
         "-file", str(layout.ca_pem)],
        ["-importcert", "-noprompt", "-alias", "broker", "-keystore", str(layout.keystore), *store,
         "-file", str(cert)],
        ["-importcert", "-noprompt", "-alias", "ca", "-keystore", str(layout.truststore), *store,
         "-file", str(layout.ca_pem)],
    ]  # fmt: skip
    for args in steps:
        proc = subprocess.run(
            [keytool, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            detail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-2:])
            raise UserError(f"making the local broker's certificates in {layout.root} failed: {detail}")
    csr.unlink(missing_ok=True)


def _jaas_value(value: str) -> str:
    # token_urlsafe never has quotes or backslashes; a password given by hand might
    if '"' in value or "\\" in value:
        raise UserError("the admin password may not contain quotes or backslashes")
    return value


def secure_properties(layout: SecureLayout, port: int, controller_port: int) -> dict[str, str]:
    """The properties that make the plaintext template's broker a secure one (they replace the
    template's listener lines and add the rest)."""
    admin = _jaas_value(layout.admin_password())
    store = _secret_file(layout.store_password_file)
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN_USER}" password="{admin}" user_{ADMIN_USER}="{admin}";'
        ),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{admin}";'
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(layout.keystore),
        "ssl.keystore.password": store,
        "ssl.key.password": store,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(layout.truststore),
        "ssl.truststore.password": store,
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER}",
        # topics come from ensure_topics (with Create) or an admin, never from a denied metadata call
        "auto.create.topics.enable": "false",
    }


def apply_properties(text: str, props: dict[str, str]) -> str:
    """``text`` (a .properties file) with each key of ``props`` set: replaced where it is, added
    at the end otherwise."""
    lines, seen = [], set()
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.startswith("#") and key in props:
            lines.append(f"{key}={props[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines.append("# secure mode (stream-orch kafka up --secure)")
    lines += [f"{k}={v}" for k, v in props.items() if k not in seen]
    return "\n".join(lines) + "\n"


def client_settings(layout: SecureLayout, address: str) -> list[str]:
    """What to export to use the secure broker as the admin (the password stays in its file)."""
    return [
        f"export STREAM_ORCH_BOOTSTRAP_SERVERS={address}",
        "export STREAM_ORCH_SECURITY_PROTOCOL=SASL_SSL",
        f"export STREAM_ORCH_SASL_MECHANISM={MECHANISM}",
        f"export STREAM_ORCH_SSL_CAFILE={layout.ca_pem}",
        f"export STREAM_ORCH_SASL_USERNAME={ADMIN_USER}",
        f"export STREAM_ORCH_SASL_PASSWORD=$(cat {layout.admin_password_file})",
    ]
