"""The process's lease-renewal thread (jobs.runtime.renewal), with stand-in runs."""

import contextlib
import sys
import threading
import time

import pytest

from jobs.processes import poll_until
from jobs.runtime import renewal
from jobs.runtime.renewal import Renewer

INTERVAL = 0.05


class Run:
    def __init__(self, *, keeps: int = 1000, fails: int = 0) -> None:
        self.renewed: list[float] = []
        self.threads: set[tuple[str, int | None]] = set()
        self.keeps, self.fails = keeps, fails  # renewals before losing it; failures first
        self.inside = threading.Event()  # set while a renewal is under way
        self.slow = 0.0

    def renew_lease(self) -> bool:
        self.inside.set()
        try:
            time.sleep(self.slow)
            if self.fails:
                self.fails -= 1
                raise ConnectionError("database away")
            self.renewed.append(time.monotonic())
            self.threads.add((threading.current_thread().name, threading.get_ident()))
            return len(self.renewed) < self.keeps
        finally:
            self.inside.clear()


@pytest.fixture(autouse=True)
def short_interval(settings):
    settings.COUNTERSIGN_HEARTBEAT_SECONDS = INTERVAL


def test_runs_are_renewed_each_interval_by_one_thread_and_not_after_their_block():
    renewer, first, second = Renewer(), Run(), Run()
    started = time.monotonic()
    with renewer.renewing(first), renewer.renewing(second):
        poll_until(lambda: len(first.renewed) >= 3 and len(second.renewed) >= 3, timeout=5)
    ended = time.monotonic()
    assert first.renewed[0] - started >= INTERVAL  # not at once: an interval after the start
    gaps = [b - a for a, b in zip(first.renewed, first.renewed[1:], strict=False)]
    assert all(gap >= INTERVAL * 0.5 for gap in gaps), gaps  # an interval apart, give or take
    assert len(first.threads) == 1 and first.threads == second.threads  # one thread for both
    assert next(iter(first.threads))[0] == "lease-renewal"
    count = len(first.renewed)
    time.sleep(3 * INTERVAL)  # what must not happen: a renewal after the block
    assert len(first.renewed) == count and all(at <= ended for at in first.renewed)


def test_a_run_whose_lease_is_lost_is_not_renewed_again():
    renewer, run = Renewer(), Run(keeps=2)
    with renewer.renewing(run):
        poll_until(lambda: len(run.renewed) == 2, timeout=5)
        time.sleep(3 * INTERVAL)
        assert len(run.renewed) == 2


def test_a_failed_renewal_is_tried_again_next_interval():
    renewer, run = Renewer(), Run(fails=2)
    with renewer.renewing(run):
        poll_until(lambda: run.renewed, timeout=5)
    assert run.fails == 0


def test_leaving_the_block_waits_for_a_renewal_under_way():
    renewer, run = Renewer(), Run()
    run.slow = 0.2
    with renewer.renewing(run):
        poll_until(run.inside.is_set, timeout=5, interval=0.001)
    assert not run.inside.is_set()  # the outcome is written after: no renewal meanwhile


def test_a_renewal_that_hangs_holds_up_the_end_of_a_run_for_a_bounded_time(monkeypatch, caplog):
    monkeypatch.setattr(renewal, "LEAVE_WAIT", 0.1)
    renewer, run = Renewer(), Run()
    run.slow = 2.0
    with renewer.renewing(run):
        poll_until(run.inside.is_set, timeout=5, interval=0.001)
        left = time.monotonic()
    assert time.monotonic() - left < 1.0
    assert "still under way" in caplog.text


def test_a_renewal_that_raises_anything_stops_no_other_renewal():
    renewer, doomed, run = Renewer(), Run(), Run()
    doomed.renew_lease = lambda: sys.exit()  # type: ignore[method-assign]
    with renewer.renewing(doomed), renewer.renewing(run):
        poll_until(lambda: len(run.renewed) >= 3, timeout=5)


def test_slow_renewals_starve_no_run():
    """Renewals slower than the interval between them: the most overdue run goes first."""
    renewer, runs = Renewer(), [Run() for _ in range(6)]
    for run in runs:
        run.slow = INTERVAL / 4
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(renewer.renewing(run))
        poll_until(lambda: all(len(run.renewed) >= 2 for run in runs), timeout=10)
