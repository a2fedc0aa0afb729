"""Storm control: one alert per condition, one "resolved", the hourly cap, retries with
backoff, and a notifier that never raises into its callers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.alerts.conditions import (
    UNDELIVERED_FILE,
    ConditionStore,
    StateFile,
    read_conditions,
)
from pipeline.alerts.events import Alert, Event, Severity
from pipeline.alerts.notifier import Notifier
from pipeline.alerts.targets import DeliveryFailed, Target
from pipeline.clock import FakeClock


def alert(key: str = "api_down", kind: Event = Event.API_DOWN) -> Alert:
    return Alert(kind, key, f"title {key}", "body", kind.severity)


def target(name: str = "t", *events: Event, min_severity: Severity = Severity.INFO) -> Target:
    return Target(name, "json://127.0.0.1", frozenset(events), min_severity, "json://127.0.0.1")


def wait(cond: object, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(cond) and cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_a_condition_is_raised_once_and_resolved_once_across_restarts(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 3, 30, 7, tzinfo=UTC))
    store = ConditionStore(tmp_path, clock, "Europe/Copenhagen")
    assert [a.key for a in store.reconcile([alert()], lambda c: True)] == ["api_down"]
    assert store.reconcile([alert()], lambda c: True) == []
    store = ConditionStore(tmp_path, clock, "Europe/Copenhagen")  # a restart
    assert store.reconcile([alert()], lambda c: True) == []
    assert [c.key for c in read_conditions(tmp_path)] == ["api_down"]
    assert store.reconcile([], lambda c: False) == []  # unknown facts clear nothing
    (done,) = store.reconcile([], lambda c: True)
    assert done.resolved
    assert "held from 2026-03-30 09:00 (UTC+02:00)" in done.body
    assert store.reconcile([], lambda c: True) == []
    assert store.once("file_failed:A/x.csv")
    assert not ConditionStore(tmp_path, clock).once("file_failed:A/x.csv")


def test_targets_take_their_events_at_or_above_their_severity() -> None:
    crit = target("c", min_severity=Severity.CRITICAL)
    only = target("o", Event.FILE_FAILED)
    assert crit.wants(alert())  # api_down is critical
    assert not crit.wants(alert("f", Event.FILE_FAILED))
    assert only.wants(alert("f", Event.FILE_FAILED))
    assert not only.wants(alert())
    assert only.wants(alert("t", Event.TEST))  # a test goes to every target


def test_retry_with_backoff_then_give_up_and_never_raise() -> None:
    clock = FakeClock()
    calls: list[tuple[str, float]] = []
    fail_first = threading.Event()
    fail_first.set()

    def send(t: Target, a: Alert) -> None:
        calls.append((a.key, clock.monotonic()))
        if fail_first.is_set():
            fail_first.clear()
            raise DeliveryFailed("server said 500")

    n = Notifier([target()], send, clock=clock, backoff=30.0).start()
    try:
        n.submit(alert("one"))
        wait(lambda: len(calls) == 1)
        assert not n.idle()  # a retry waits
        clock.advance(29)
        n._wake.set()
        time.sleep(0.05)
        assert len(calls) == 1
        clock.advance(1)
        n._wake.set()
        wait(n.idle)
        assert [k for k, _ in calls] == ["one", "one"]
        assert calls[1][1] - calls[0][1] == 30.0
        assert [r.ok for r in n.results] == [False, True]
    finally:
        n.stop()

    def boom(t: Target, a: Alert) -> None:
        raise RuntimeError("a plugin's surprise")

    n = Notifier([target()], boom, clock=clock, attempts=2, backoff=1.0).start()
    try:
        n.submit(alert("two"))
        wait(lambda: len(n.results) == 1)
        clock.advance(1)
        n._wake.set()
        wait(n.idle)
        assert [r.ok for r in n.results] == [False, False]
        assert n._thread is not None
        assert n._thread.is_alive()  # it carries on
    finally:
        n.stop()


def test_hourly_cap_per_target_says_what_it_held_back() -> None:
    clock = FakeClock()
    got: list[Alert] = []
    n = Notifier([target()], lambda t, a: got.append(a), clock=clock, max_per_hour=3).start()
    try:
        for i in range(5):
            n.submit(alert(f"k{i}"))
        wait(lambda: n.idle() and len(n.results) == 3)
        assert [a.key for a in got] == ["k0", "k1", "k2"]
        clock.advance(3600)
        n.submit(alert("later"))
        wait(lambda: len(got) == 4)
        assert "2 earlier alert(s) to this target were held back" in got[-1].body
    finally:
        n.stop()


def test_an_alert_a_down_target_did_not_take_is_delivered_after_a_restart(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = StateFile(tmp_path, UNDELIVERED_FILE)

    def down(t: Target, a: Alert) -> None:
        raise DeliveryFailed("connection refused")

    n = Notifier([target("mail"), target("hook")], down, clock=clock, store=store).start()
    try:
        n.submit(alert("api_down"))
        wait(lambda: len(n.results) == 2)  # both failed; retries wait
    finally:
        n.stop()  # the service stops while the targets are down
    got: list[tuple[str, str]] = []
    # after the restart "hook" is gone from the config: its delivery is not attempted
    n = Notifier(
        [target("mail")], lambda t, a: got.append((t.label, a.key)), clock=clock, store=store
    ).start()
    try:
        wait(n.idle)
        assert got == [("mail", "api_down")]
    finally:
        n.stop()
    # delivered: nothing is kept for a third start
    n = Notifier(
        [target("mail")], lambda t, a: got.append((t.label, a.key)), clock=clock, store=store
    ).start()
    try:
        wait(n.idle)
        assert got == [("mail", "api_down")]
    finally:
        n.stop()


def test_an_alert_that_fails_at_the_stop_is_kept_and_a_damaged_store_starts_empty(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = StateFile(tmp_path, UNDELIVERED_FILE)
    gate = threading.Event()

    def down(t: Target, a: Alert) -> None:
        gate.wait(5)  # the stop comes while this first attempt is on its way
        raise DeliveryFailed("connection refused")

    n = Notifier([target("mail")], down, clock=clock, store=store).start()
    n.submit(alert("disk_low", Event.DISK_LOW))
    time.sleep(0.1)
    stopping = threading.Thread(target=n.stop, kwargs={"timeout": 5.0})
    stopping.start()
    time.sleep(0.1)
    gate.set()
    stopping.join(10)
    keys = [e["alert"]["key"] for e in store.read()["undelivered"]]
    assert keys == ["disk_low"]
    store.write({"undelivered": 7})  # damaged: not a list
    got: list[str] = []
    n = Notifier([target("mail")], lambda t, a: got.append(a.key), clock=clock, store=store)
    n.start()  # starts, with nothing to resume
    try:
        n.submit(alert("api_down"))
        wait(n.idle)
        assert got == ["api_down"]
    finally:
        n.stop()


def test_the_hourly_cap_holds_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateFile(tmp_path, UNDELIVERED_FILE)
    got: list[str] = []

    def start() -> Notifier:
        return Notifier(
            [target("mail")],
            lambda t, a: got.append(a.key),
            clock=clock,
            max_per_hour=2,
            store=store,
        ).start()

    n = start()
    try:
        for key in ("a", "b"):
            n.submit(alert(key))
        wait(n.idle)
    finally:
        n.stop()
    n = start()  # a restart (a crash loop would do the same) within the hour
    try:
        n.submit(alert("c"))
        wait(n.idle)
        assert got == ["a", "b"]  # held back: two went this hour already
        clock.advance(3600)
        n.submit(alert("d"))
        wait(n.idle)
        assert got == ["a", "b", "d"]
    finally:
        n.stop()
