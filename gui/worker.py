"""Run one core call (analysis, drift, rings, FFT, particles, video export) in a QThread with
progress and cancellation.

The core's long functions take ``progress(done, total)`` and ``cancel`` (a ``threading.Event``) and
raise :class:`temtrack.errors.Cancelled` when it is set; this thread forwards both to Qt signals,
which Qt delivers in the GUI thread (queued connections), so the window never blocks.
"""
from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

from temtrack.errors import Cancelled, TemtrackError

TaskFunc = Callable[..., Any]


class TaskThread(QThread):
    """A QThread calling ``func(progress=..., cancel=...)`` once.

    Signals
    -------
    progressed(int, int)
        ``(done, total)``, throttled to changes of at least 1% (or of ``total``).
    succeeded(object)
        The return value.
    failed(str)
        A one-line message: the core's TemtrackError text, or the type and text of a bug.
    was_cancelled()
        The user pressed Cancel and the core stopped.
    done()
        Emitted last in every case.
    """

    progressed = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str)
    was_cancelled = Signal()
    done = Signal()

    def __init__(self, func: TaskFunc, name: str = "task", parent=None):
        super().__init__(parent)
        self.func = func
        self.name = name
        self.cancel_event = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self.traceback: str | None = None
        self._last = (-1, -1)

    def cancel(self) -> None:
        self.cancel_event.set()

    def _progress(self, done: int, total: int) -> None:
        done, total = int(done), int(total)
        last_done, last_total = self._last
        step = max(1, total // 100)
        if total != last_total or done >= total or done - last_done >= step:
            self._last = (done, total)
            self.progressed.emit(done, total)

    def run(self) -> None:  # runs in the worker thread
        try:
            self.result = self.func(progress=self._progress, cancel=self.cancel_event)
        except Cancelled:
            self.error = "cancelled"
            self.was_cancelled.emit()
        except TemtrackError as exc:
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.failed.emit(self.error)
        except Exception as exc:  # noqa: BLE001 - a bug in the core must not take the window down
            self.traceback = traceback.format_exc()
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.error = f"{self.name} failed with an internal error: {type(exc).__name__}: {first}"
            self.failed.emit(self.error)
        else:
            if self.cancel_event.is_set():
                self.error = "cancelled"
                self.was_cancelled.emit()
            else:
                self.succeeded.emit(self.result)
        finally:
            self.done.emit()
