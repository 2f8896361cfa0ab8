"""Admin calls that aiokafka's admin client lacks: SCRAM credentials (AlterUserScramCredentials)
and ACLs (CreateAcls, DescribeAcls), as small protocol requests sent through its client.

The password never leaves this process: the request carries a salted PBKDF2 hash (what SCRAM
stores), computed here as RFC 5802's Hi().
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeAclsRequest_v1, DescribeAclsResponse_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

from stream_orch.errors import UserError

SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096..16384


class _AlterScramResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramStruct]):
    API_KEY = 51

    def __init__(self, upsertion: tuple[str, int, int, bytes, bytes]) -> None:
        self._upsertion = upsertion

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([], [(*self._upsertion, {})], {})


def salted_password(password: str, salt: bytes, iterations: int, mechanism: str) -> bytes:
    """SCRAM's SaltedPassword: Hi(password, salt, i), i.e. PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[mechanism][1], password.encode(), salt, iterations)


async def upsert_scram_user(admin: AIOKafkaAdminClient, user: str, password: str, mechanism: str) -> None:
    """Create or change ``user``'s SCRAM credentials for ``mechanism``."""
    code, _ = SCRAM_MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    hashed = salted_password(password, salt, SCRAM_ITERATIONS, mechanism)
    response = await admin._send_to_controller(_AlterScram((user, code, SCRAM_ITERATIONS, salt, hashed)))
    for name, error_code, message, _tags in response.results:
        if error_code:
            raise UserError(
                f"creating Kafka user {name!r} failed: {message or for_code(error_code).__name__}"
            )


class _CreateAclsResponse(Response):
    API_KEY = 30
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(("error_code", Int16), ("error_message", String("utf-8")))),
    )


class _CreateAclsStruct(RequestStruct):
    API_KEY = 30
    API_VERSION = 1
    RESPONSE_TYPE = _CreateAclsResponse
    SCHEMA = Schema(
        (
            "creations",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("pattern_type", Int8),
                ("principal", String("utf-8")),
                ("host", String("utf-8")),
                ("operation", Int8),
                ("permission_type", Int8),
            ),
        ),
    )


#: (resource type, resource name, pattern type, principal, operation) as Kafka's codes
AclCodes: TypeAlias = tuple[int, str, int, str, int]
_ALLOW = 3
_ANY_HOST = "*"


class _CreateAcls(Request[_CreateAclsStruct]):
    API_KEY = 30

    def __init__(self, acls: Sequence[AclCodes]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[_CreateAclsStruct]) -> _CreateAclsStruct:
        return request_struct_class(
            [
                (rtype, name, pattern, principal, _ANY_HOST, op, _ALLOW)
                for rtype, name, pattern, principal, op in self._acls
            ]
        )


async def create_acls(admin: AIOKafkaAdminClient, acls: Sequence[AclCodes]) -> None:
    """Create the ALLOW bindings ``acls`` (any host); one existing already is not an error."""
    if not acls:
        return
    response = await admin._send_request(_CreateAcls(acls))
    problems = [msg or for_code(code).__name__ for code, msg in response.results if code]
    if problems:
        raise UserError(f"creating ACLs failed: {problems[0]}")


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def __init__(self, principal: str) -> None:
        self._principal = principal

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        # any resource type (1), any name, any pattern (1), this principal, any host/op/permission
        return request_struct_class(1, None, 1, self._principal, None, 1, 1)


async def describe_acls(admin: AIOKafkaAdminClient, principal: str) -> list[AclCodes]:
    """Every ALLOW binding of ``principal`` (for showing what is applied)."""
    response: DescribeAclsResponse_v1 = await admin._send_request(_DescribeAcls(principal))
    if response.error_code:
        raise UserError(
            f"listing ACLs failed: {response.error_message or for_code(response.error_code).__name__}"
        )
    out: list[AclCodes] = []
    for rtype, name, pattern, acls in response.resources:
        for acl_principal, _host, op, permission in acls:
            if permission == _ALLOW:
                out.append((rtype, name, pattern, acl_principal, op))
    return out
