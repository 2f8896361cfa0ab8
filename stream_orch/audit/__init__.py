"""The audit trail: who started, stopped, restarted, replayed or ingested what, on the audit
topic (:mod:`.events`: the record; :mod:`.log`: the writer; :mod:`.read`: ``stream-orch audit``)."""

from stream_orch.audit.events import NOBODY, AuditEvent, AuditSubject
from stream_orch.audit.log import AuditLog, Auditor, NullAuditLog, audit_log

__all__ = ["NOBODY", "AuditEvent", "AuditLog", "AuditSubject", "Auditor", "NullAuditLog", "audit_log"]
