"""This process's signal state: was it asked to stop (the sweep stops launching; its report exits with the
signal's code), and is Lightning's own SIGTERM handler in charge right now."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from allconv_sweep.errors import RunInterrupted

_interrupt: "RunInterrupted | None" = None


def note_interrupt(e: "RunInterrupted | None") -> None:
    """This process was asked to stop (the sweep stops launching jobs; its report exits with e's code)."""
    global _interrupt
    _interrupt = e


def interrupted() -> "RunInterrupted | None":
    return _interrupt


_in_lightning = False


class lightning_handles_signals:
    """Around trainer.fit/validate/test: Lightning's own SIGTERM handler stops the run at the next batch
    (train() then records it); another handler installed by this process must not raise in between."""

    def __enter__(self):
        global _in_lightning
        self._outer, _in_lightning = _in_lightning, True
        return self

    def __exit__(self, *exc):
        global _in_lightning
        _in_lightning = self._outer
        return False


def lightning_is_handling_signals() -> bool:
    return _in_lightning
