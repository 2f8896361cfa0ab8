"""A worker's start-up check of its Kafka authorisation: every topic it reconciles must be
visible to its user and every consumer group of its nodes usable, or the worker refuses to start
with one line naming the topic or group and the operation its user lacks.

Without it a missing ACL shows late and vaguely: a topic that is not visible looks missing (the
worker then tries to create it, and waits for its metadata for half a minute), a group shows as
retries in the consumer. Kafka has no "what may I do" request for an ordinary user, but it
answers a metadata request with TOPIC_AUTHORIZATION_FAILED for a topic the user may neither read
nor write (READ and WRITE imply DESCRIBE), and FindCoordinator with GROUP_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.protocol.metadata import MetadataRequest

from stream_orch.errors import UserError

log = logging.getLogger(__name__)
_TOPIC_DENIED = TopicAuthorizationFailedError.errno


def _who(client_args: dict[str, Any]) -> str:
    user = client_args.get("sasl_plain_username")
    return f"user {user!r}" if user else "this client"


async def check_access(
    client_args: dict[str, Any], needs: dict[str, set[str]], groups: list[str], outputs: set[str]
) -> frozenset[str]:
    """``needs``: topic -> the operations the worker needs on it (:mod:`stream_orch.security.acls`);
    raise a UserError for the first topics and groups its user may not use. A route output
    (``outputs``) it may not write is no reason to stop: it is returned, and the worker sends the
    records routed there where its error policy says (one warning here)."""
    admin = AIOKafkaAdminClient(**client_args)
    await admin.start()
    denied: set[str] = set()
    problems: list[str] = []
    try:
        # never auto-created by asking: a missing topic is created by ensure_topics, as planned
        request = MetadataRequest(sorted(needs), allow_auto_topic_creation=False)
        for topic in (await admin._send_request(request)).to_object()["topics"]:
            if topic.get("error_code") != _TOPIC_DENIED:
                continue
            name = topic["topic"]
            ops = sorted(needs.get(name, set()) - {"DESCRIBE_CONFIGS", "CREATE"}) or ["DESCRIBE"]
            if name in outputs and ops == ["WRITE"]:
                denied.add(name)
            else:
                problems.append(f"{'+'.join(ops)} on topic {name!r}")
        for group in groups:
            try:
                await admin.find_coordinator(group)
            except GroupAuthorizationFailedError:
                problems.append(f"READ on group {group!r}")
    finally:
        await admin.close()
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise UserError(
            f"not authorized: {_who(client_args)} at {client_args.get('bootstrap_servers')} lacks {shown}; "
            "`stream-orch acl plan TOPOLOGY --user USER` lists the ACLs a worker needs",
            exit_code=1,
        )
    for topic in sorted(denied):
        log.warning(
            "not authorized: %s lacks WRITE on topic %r: events routed there go where the error "
            "policy sends `not_authorized` (the DLQ unless a retry tier lists it), nothing is written there",
            _who(client_args),
            topic,
        )
    return frozenset(denied)


def denial(exc: BaseException, *, group: str, txn_prefix: str | None) -> str | None:
    """One line for an authorisation error a node meets while it runs (an ACL removed, or one
    the start-up check cannot see: transactional ids), naming what is missing; None for any
    other error. The node starts over as after any failure, so a granted ACL heals it."""
    if isinstance(exc, TransactionalIdAuthorizationFailed):
        return f"not authorized: WRITE on transactional ids {txn_prefix}* (exactly_once)"
    if isinstance(exc, GroupAuthorizationFailedError):
        return f"not authorized: READ on group {group!r}"
    if isinstance(exc, TopicAuthorizationFailedError):
        return f"not authorized on a topic: {str(exc).strip() or 'READ or WRITE'}"
    if isinstance(exc, ClusterAuthorizationFailedError):
        return "not authorized: a cluster operation (an idempotent producer needs WRITE on some topic)"
    return None
