"""``stream-orch kafka user add NAME``: SCRAM credentials on the secure local broker, made by its
admin through the admin API. The password is read from the environment or a prompt, never a flag,
and never printed."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient

from stream_orch.broker.manager import BrokerManager
from stream_orch.broker.secure import MECHANISM
from stream_orch.errors import UserError
from stream_orch.transport.security_admin import upsert_scram_user

PASSWORD_ENV = "STREAM_ORCH_NEW_USER_PASSWORD"
TIMEOUT_S = 15.0


def read_password(name: str) -> str:
    """From :data:`PASSWORD_ENV`, else a prompt (twice) on a terminal; never echoed."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise UserError(f"no password for {name!r}: set {PASSWORD_ENV} or run on a terminal to be asked")
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    if not password:
        raise UserError(f"the password of {name!r} is empty")
    return password


async def add_user(manager: BrokerManager, name: str) -> None:
    if not manager.secure:
        raise UserError(
            f"the local broker under {manager.layout.root} is not secure: "
            "start it with `stream-orch kafka up --secure`"
        )
    password = read_password(name)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=manager.address,
        request_timeout_ms=int(TIMEOUT_S * 1000),
        **manager.admin_client_args(),
    )
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT_S)
    except Exception:
        raise UserError(f"the secure local broker does not answer at {manager.address}") from None
    try:
        await asyncio.wait_for(upsert_scram_user(admin, name, password, MECHANISM), TIMEOUT_S)
    finally:
        await admin.close()
    manager.say(f"user {name!r} ({MECHANISM}) saved on {manager.address}")
