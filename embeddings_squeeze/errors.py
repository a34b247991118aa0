"""Exceptions the CLI turns into one line on stderr and a non-zero exit code."""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""

    exit_code = 2


class Interrupted(UserError):
    """Training stopped by SIGINT or SIGTERM; the message says how to resume."""

    exit_code = 130
