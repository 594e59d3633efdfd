"""Errors a user can fix, the one way a run stops early on request, and the body of a command-line tool."""

import signal
import sys


class UserError(Exception):
    """Bad input; the message is the whole story: one line, exit code 2, nothing written."""


class RunInterrupted(BaseException):
    """A run stopped by SIGTERM or SIGINT, recorded as interrupted (last.ckpt kept: the same command resumes).
    A BaseException, like KeyboardInterrupt, so that a sweep stops instead of going on to its next job."""

    def __init__(self, signame: str, message: str):
        super().__init__(message)
        self.signame = signame

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, the shell's convention (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + signal.Signals[self.signame]


def command(action, *args, **kwargs) -> int:
    """A command-line tool's body: a UserError is its one line on stderr and exit code 2, else 0."""
    try:
        action(*args, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
