"""LeaveGroup for a static member (KIP-345), which aiokafka does not send.

aiokafka skips LeaveGroup when ``group_instance_id`` is set, and its protocol module ships
LeaveGroup v0/v1 only, which cannot name a static member. So a worker stopped with SIGTERM
would leave its partitions idle until its session timed out (10 s), or until it came back.
Version 3 (the last one before the flexible encoding) names members by
``(member_id, group_instance_id)``, which is what the broker needs to drop a static member at
once and hand its partitions to the others.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.client import ConnectionGroup
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger(__name__)

LEAVE_GROUP = 13


class LeaveGroupResponse_v3(Response):
    API_KEY = LEAVE_GROUP
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16)
            ),
        ),
    )


class LeaveGroupRequest_v3(RequestStruct):
    API_KEY = LEAVE_GROUP
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


LeaveGroupStruct: TypeAlias = LeaveGroupRequest_v3


class StaticLeaveGroup(Request[LeaveGroupStruct]):
    """LeaveGroup of one static member; the broker must speak v3 (Kafka 2.4 and later)."""

    API_KEY = LEAVE_GROUP

    def __init__(self, group: str, member_id: str, instance_id: str) -> None:
        self.group = group
        self.member_id = member_id
        self.instance_id = instance_id

    def build(self, request_struct_class: type[LeaveGroupStruct]) -> LeaveGroupStruct:
        return request_struct_class(self.group, [(self.member_id, self.instance_id)])


def leave_errors(response: LeaveGroupResponse_v3) -> list[str]:
    """The errors in a response (the request's and each member's): class name and code."""
    codes = [response.error_code] + [member[2] for member in response.members]
    return [f"{for_code(code).__name__} ({code})" for code in codes if code != 0]


async def leave_static_group(consumer: AIOKafkaConsumer) -> bool:
    """Ask the group coordinator to drop ``consumer``'s static membership now; True if it did.

    Best effort, like aiokafka's own leave of a dynamic member: a failure is logged and the
    session timeout remains the fallback. Call it right before ``consumer.stop()``.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    instance_id = getattr(coordinator, "_group_instance_id", None)
    if coordinator is None or instance_id is None or coordinator.coordinator_id is None:
        return False
    if not coordinator.member_id or coordinator.generation <= 0:
        return False  # never joined: nothing to leave
    request = StaticLeaveGroup(coordinator.group_id, coordinator.member_id, instance_id)
    try:
        response = await consumer._client.send(
            coordinator.coordinator_id, request, group=ConnectionGroup.COORDINATION
        )
    except Exception as exc:  # the broker may be gone: the session timeout still frees the partitions
        log.warning("static member %s could not leave group %s: %r", instance_id, coordinator.group_id, exc)
        return False
    errors = leave_errors(response)
    if errors:
        log.warning(
            "static member %s leaving group %s: %s", instance_id, coordinator.group_id, ", ".join(errors)
        )
        return False
    log.info("static member %s left group %s", instance_id, coordinator.group_id)
    return True
