"""The LeaveGroup v3 request aiokafka lacks: its wire encoding and its error reading."""

from __future__ import annotations

import struct

import pytest

from stream_orch.transport.leave_group import LeaveGroupResponse_v3, StaticLeaveGroup, leave_errors


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def test_request_names_the_static_member_by_member_id_and_instance_id() -> None:
    built = StaticLeaveGroup("g1", "m-1", "pod-0").prepare({13: (0, 5)})
    assert built.API_VERSION == 3
    expected = _string("g1") + struct.pack(">i", 1) + _string("m-1") + _string("pod-0")
    assert built.encode() == expected


def test_a_broker_without_v3_is_refused_before_sending() -> None:
    with pytest.raises(NotImplementedError):
        StaticLeaveGroup("g1", "m-1", "pod-0").prepare({13: (0, 1)})


def _response(error: int, member_error: int) -> LeaveGroupResponse_v3:
    raw = (
        struct.pack(">ih", 0, error)
        + struct.pack(">i", 1)
        + _string("m-1")
        + _string("pod-0")
        + struct.pack(">h", member_error)
    )
    return LeaveGroupResponse_v3.decode(raw)


def test_errors_of_the_request_and_of_each_member_are_reported() -> None:
    assert leave_errors(_response(0, 0)) == []
    assert leave_errors(_response(0, 25)) == ["UnknownMemberIdError (25)"]
    assert leave_errors(_response(16, 0)) == ["NotCoordinatorForGroupError (16)"]
    # FENCED_INSTANCE_ID: aiokafka has no class for it, the code still says which
    assert leave_errors(_response(0, 82)) == ["UnknownError (82)"]
