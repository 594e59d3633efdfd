"""This process's signal state: was it asked to stop, and is Lightning's SIGTERM handler in charge now."""

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from allconv_sweep.errors import RunInterrupted

_interrupt: "RunInterrupted | None" = None
_in_lightning = False


def note_interrupt(e: "RunInterrupted | None") -> None:
    global _interrupt
    _interrupt = e


def interrupted() -> "RunInterrupted | None":
    return _interrupt


@contextmanager
def lightning_handles_signals():
    """Around trainer.fit/test: Lightning's SIGTERM handler stops the run; no other handler may raise then."""
    global _in_lightning
    outer, _in_lightning = _in_lightning, True
    try:
        yield
    finally:
        _in_lightning = outer


def lightning_is_handling_signals() -> bool:
    return _in_lightning
