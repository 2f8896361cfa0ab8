"""Errors that end a command with one clear line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (bad argument, bad config, unreachable cluster).

    The CLI prints ``str(error)`` alone on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
