"""One thread per process renews the leases of the runs under way in it.

A run is renewed every COUNTERSIGN_HEARTBEAT_SECONDS from its start while its handler
runs (`renewing`). One long-lived thread does it for every run of the process: starting
and joining a thread of its own per run took about half a millisecond, a tenth of a
one-step job, for the few runs that last long enough to need a renewal at all. The
thread keeps its database connection while there are runs to renew (closed after a
failure, and once none is left).
"""

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

LEAVE_WAIT = 5.0  # seconds a run that ends waits for a renewal of its lease under way
SHORTEST_INTERVAL = 0.05  # seconds, whatever COUNTERSIGN_HEARTBEAT_SECONDS says


class Renewable(Protocol):
    def renew_lease(self) -> bool:
        """Renew the lease once; False once it is lost (the run is then not renewed).
        A failure to reach the database is its own to report: it returns True."""


class Renewer:
    def __init__(self) -> None:
        self._due: dict[Renewable, float] = {}  # run -> when its next renewal is due
        self._changed = threading.Condition()
        self._renewing: Renewable | None = None
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @contextmanager
    def renewing(self, run: Renewable) -> Iterator[None]:
        """Renew `run`'s lease while the block runs; when it ends, no renewal of it is
        to come, nor under way (one is waited for, LEAVE_WAIT at most): its outcome is
        written after."""
        self._add(run)
        try:
            yield
        finally:
            self._remove(run)

    def _add(self, run: Renewable) -> None:
        due = time.monotonic() + _interval()
        with self._changed:
            self._due[run] = due
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._loop, name="lease-renewal", daemon=True)
                try:
                    thread.start()
                except BaseException:  # the run fails as it would without a heartbeat
                    self._due.pop(run, None)
                    raise
                self._thread = thread
            elif due < self._wake_at:  # usually not: the thread wakes once an interval anyway
                self._changed.notify_all()

    def _remove(self, run: Renewable) -> None:
        if os.getpid() != self._pid:  # a child forked inside the block: not its renewer
            return
        with self._changed:
            self._due.pop(run, None)
            if not self._changed.wait_for(lambda: self._renewing is not run, timeout=LEAVE_WAIT):
                # Harmless if it lands later: the outcome has cleared the lease's owner,
                # which every renewal is conditional on.
                logger.warning("a lease renewal still under way after %.0fs", LEAVE_WAIT)

    def _loop(self) -> None:
        while True:
            try:
                run = self._next_due()
            except Exception:  # never let the thread die: every run of the process needs it
                logger.exception("lease renewal failed")
                time.sleep(1.0)
                continue
            if run is not None:
                self._renew(run)

    def _next_due(self) -> Renewable | None:
        """The run whose renewal is due, marked as under way; or None after sleeping until
        the next is due (or an interval, or a new run that is due sooner)."""
        with self._changed:
            interval, now = _interval(), time.monotonic()
            # The most overdue first: renewals slower than the interval must not starve
            # the runs last in line.
            run, due = min(self._due.items(), key=lambda item: item[1], default=(None, now))
            if run is None or due > now:
                if run is None:
                    _close_connection()  # no run to renew: no idle connection kept
                self._wake_at = due if run is not None else now + interval
                self._changed.wait(timeout=self._wake_at - now)
                return None
            self._due[run] = now + interval
            self._renewing = run
            return run

    def _renew(self, run: Renewable) -> None:
        kept = True
        try:
            # As a task's start does: one broken (a database restart) or past
            # CONN_MAX_AGE is closed, and the next query opens a fresh one.
            connection.close_if_unusable_or_obsolete()
            kept = run.renew_lease()
        except BaseException:  # tried again next interval; the thread goes on for all runs
            logger.exception("lease renewal failed")
            _close_connection()  # the next renewal opens a fresh one
        finally:
            with self._changed:
                self._renewing = None
                if not kept:
                    self._due.pop(run, None)
                self._changed.notify_all()


def _interval() -> float:
    return max(settings.COUNTERSIGN_HEARTBEAT_SECONDS, SHORTEST_INTERVAL)


def _close_connection() -> None:
    """Close this thread's database connection, if it has one open."""
    if connection.connection is not None:
        try:
            connection.close()
        except Exception:  # a connection already broken: nothing more to do
            logger.debug("closing the renewal thread's connection failed", exc_info=True)


_renewer = Renewer()


def renewing(run: Renewable) -> AbstractContextManager[None]:
    """Renew `run`'s lease (`Renewable`) while the block runs."""
    return _renewer.renewing(run)


def _forget_after_fork() -> None:
    global _renewer
    _renewer = Renewer()  # the parent's thread is not in the child; its lock may be held


os.register_at_fork(after_in_child=_forget_after_fork)
