"""The event follower's bookkeeping, and the Redis back-off of best-effort work."""

import json

from django.utils import timezone

from core import redis as core_redis
from jobs.follow import EventCursor
from jobs.models import JobEvent


def row(seq: int, kind: str = "progress") -> JobEvent:
    return JobEvent(seq=seq, kind=kind, data={}, created_at=timezone.now())


def live(seq: int, kind: str = "progress") -> str:
    return json.dumps({"seq": seq, "kind": kind, "data": {}, "created_at": "x"})


def test_an_event_never_published_is_read_from_the_rows():
    cursor = EventCursor()
    assert [e["seq"] for e in cursor.stored([row(1)])] == [1]
    event, check_now = cursor.live(live(3))  # 2 was not published (Redis backing off)
    assert event["seq"] == 3 and check_now and cursor.missing == {2}
    assert cursor.read_after == 1

    assert [e["seq"] for e in cursor.stored([row(2), row(3)])] == [2]  # 3 was seen live
    assert not cursor.missing and cursor.read_after == 3


def test_a_gap_whose_number_went_elsewhere_is_given_up_once_later_rows_are_stored():
    cursor = EventCursor(last=1)
    cursor.live(live(3))
    assert [e["seq"] for e in cursor.stored([row(4)])] == [4]
    assert not cursor.missing


def test_the_closing_event_closes_only_without_gaps():
    cursor = EventCursor()
    cursor.live(live(2, "job.succeeded"))
    assert not cursor.closed("succeeded")
    cursor.stored([row(1), row(2, "job.succeeded")])
    assert cursor.closed("succeeded")


def test_one_use_of_redis_backing_off_does_not_pause_another(monkeypatch):
    monkeypatch.setattr(core_redis, "_down_until", {})
    calls = []

    def fail(client: object) -> None:
        raise ConnectionError("down")

    assert core_redis.best_effort("redis://127.0.0.1:6379/0", fail, what="metrics") is None
    assert (
        core_redis.best_effort(
            "redis://127.0.0.1:6379/0", lambda c: calls.append("m"), what="metrics"
        )
        is None
    )  # backing off
    core_redis.best_effort(
        "redis://127.0.0.1:6379/0", lambda c: calls.append("e"), what="live events"
    )
    assert calls == ["e"]
