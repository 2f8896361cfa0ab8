"""The two errors of the expression language: refused when compiled, failed for one record."""

from __future__ import annotations

# Python's messages quote values (`could not convert string to float: '<the whole field>'`);
# the message goes into the DLQ record's reason, next to the record's own bytes
_MAX_MESSAGE = 200


class ExpressionError(Exception):
    """An expression that is not allowed or not valid; ``offset`` is its column (0-based)."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class EvaluationError(ExpressionError):
    """Evaluating a compiled expression failed for one record (a missing field, a bad type).

    Steps catch it and dead-letter the record; ``str()`` names the expression. The message is
    cut to 200 characters.
    """

    def __init__(self, message: str, source: str = "", field: str | None = None) -> None:
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        super().__init__(message, 0)
        self.source = source
        self.field = field

    def __str__(self) -> str:
        return f"{self.message} in `{self.source}`" if self.source else self.message
