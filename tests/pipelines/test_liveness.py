"""Dead-agent detection as pure functions over task facts (pipelines/liveness.py): what counts as a sign of
life, when silence is stale, and that silence the controller could not see is never counted."""
from __future__ import annotations

from dataclasses import replace

from pipelines.liveness import (NONRESPONSIVE, STALE_MARK, LivenessMonitor, StepFacts, blind_after, judge,
                                observe, poll_interval)

RUNNING = StepFacts(task_id="t1", status="in_progress", last_update="2026-12-06T10:00:00", last_iteration=3,
                    worker="gpu-0", worker_registered=True, worker_task="t1",
                    worker_last_activity="2026-12-06T10:00:01")


def test_a_silent_running_step_goes_stale_after_the_threshold_and_the_reason_says_why():
    watch = observe(None, RUNNING, now=100.0)
    assert not judge(observe(watch, RUNNING, 119.0), RUNNING, 119.0, stale_after_s=20).stale
    dead = replace(RUNNING, worker_registered=False)
    watch = observe(watch, dead, 125.0)  # the agent's registration vanished: no sign, nothing changed
    verdict = judge(watch, dead, 125.0, stale_after_s=20)
    assert verdict.stale and verdict.silent_s == 25.0
    assert verdict.reason.startswith(STALE_MARK) and "25 s" in verdict.reason
    assert "agent gpu-0 no longer registered" in verdict.reason and "2026-12-06T10:00:00" in verdict.reason


def test_any_change_of_the_task_or_its_agent_is_a_sign_of_life():
    for alive in (replace(RUNNING, last_update="2026-12-06T10:05:00"), replace(RUNNING, last_iteration=4),
                  replace(RUNNING, worker_last_activity="2026-12-06T10:05:00")):
        watch = observe(observe(None, RUNNING, 0.0), alive, 50.0)
        assert watch.since == 50.0 and not judge(watch, alive, 60.0, 20).stale


def test_a_long_step_that_keeps_reporting_is_never_stale():
    monitor = LivenessMonitor(stale_after_s=20, blind_after_s=15)
    for i in range(200):  # 200 polls, 5 s apart: 1000 s, 50 x the threshold
        facts = replace(RUNNING, last_update=f"t{i // 3}")  # a report every 15 s
        assert not any(v.stale for _, v in monitor.poll([facts], now=5.0 * i))


def test_the_agent_counts_only_while_it_says_it_runs_this_task():
    other = replace(RUNNING, worker_task="t9", worker_last_activity="2026-12-06T10:09:00")
    assert other.signs() == replace(other, worker_last_activity="later").signs()  # its reports are not ours
    assert "agent gpu-0 runs t9 now" in other.worker_note()
    assert replace(RUNNING, worker_task="").worker_note() == "agent gpu-0 runs nothing now"
    assert RUNNING.signs() != replace(RUNNING, worker_last_activity="later").signs()


def test_queued_and_finished_steps_are_never_stale():
    for status in ("queued", "completed", "failed", "stopped", "created"):
        facts = replace(RUNNING, status=status)
        assert not judge(observe(None, facts, 0.0), facts, 10_000.0, 20).stale


def test_the_servers_watchdog_stop_is_stale_at_once():
    facts = replace(RUNNING, status="stopped", status_message="Forced stop (non-responsive)")
    verdict = judge(observe(None, facts, 0.0), facts, 0.0, 600)
    assert verdict.stale and "watchdog" in verdict.reason and NONRESPONSIVE in facts.status_message.lower()


def test_silence_the_controller_could_not_see_is_not_counted():
    monitor = LivenessMonitor(stale_after_s=20, blind_after_s=15)
    monitor.poll([RUNNING], now=0.0)
    monitor.poll([RUNNING], now=5.0)
    # the server out of reach for 60 s: the next read comes at 65 s, the step unchanged
    assert not any(v.stale for _, v in monitor.poll([RUNNING], now=65.0))
    assert not any(v.stale for _, v in monitor.poll([RUNNING], now=80.0))
    (_, verdict), = monitor.poll([RUNNING], now=86.0)  # 21 s of silence the controller did see
    assert verdict.stale


def test_a_re_enqueued_step_is_watched_afresh():
    monitor = LivenessMonitor(stale_after_s=20, blind_after_s=15)
    for now in (0.0, 5.0, 10.0, 15.0):
        monitor.poll([RUNNING], now)
    monitor.forget("t1")
    (_, verdict), = monitor.poll([RUNNING], now=21.0)
    assert not verdict.stale and verdict.silent_s == 0.0


def test_polling_is_a_quarter_of_the_threshold_at_most_clearmls_and_blindness_three_missed_polls():
    assert poll_interval(600) == 12.0 and poll_interval(20) == 5.0 and poll_interval(2) == 1.0
    assert blind_after(20, 5.0) == 15.0 and blind_after(600, 12.0) == 300.0
