"""Weighted queues: `--queues heavy:3,light:1` shares a worker's fetches by weight."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import psycopg
import pytest

from conveyor.app import Conveyor
from conveyor.weights import parse_queue_spec, weighted_order
from tests.apps import recording
from tests.conftest import wait_until
from tests.processes import Processes


def test_weights_are_the_last_numeric_part() -> None:
    choice = parse_queue_spec(["email-sending:5", "warmup:process:1", "plain"])
    assert choice.queues == ["email-sending", "warmup:process", "plain"]
    assert choice.weights == {"email-sending": 5, "warmup:process": 1, "plain": 1}
    assert choice.weighted


def test_no_weight_keeps_the_strict_order() -> None:
    choice = parse_queue_spec(["a", "b:c", " "])
    assert choice.queues == ["a", "b:c"]
    assert not choice.weighted


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["a:0"], "weight must be 1-1000"),
        (["a:1001"], "weight must be 1-1000"),
        (["a:2", "a:3"], "listed twice"),
        (["bad name:2"], "queue name"),
        (["a:high"], "lane names"),
    ],
)
def test_bad_specs_are_refused(spec: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_queue_spec(spec)


def test_the_first_place_goes_by_weight() -> None:
    rng = random.Random(7)
    firsts = Counter(
        weighted_order(["a", "b", "c"], {"a": 6, "b": 3, "c": 1}, rng)[0] for _ in range(20_000)
    )
    assert firsts["a"] / 20_000 == pytest.approx(0.6, abs=0.02)
    assert firsts["b"] / 20_000 == pytest.approx(0.3, abs=0.02)
    assert firsts["c"] / 20_000 == pytest.approx(0.1, abs=0.02)


def test_a_bad_weight_on_the_command_line_is_a_usage_error(procs: Processes) -> None:
    worker = procs.worker(queues="heavy:0,light")
    assert worker.wait(60) == 2
    assert "weight must be 1-1000" in procs.logs()


async def test_a_busy_worker_shares_its_fetches_by_weight(
    app: Conveyor,
    procs: Processes,
    db: psycopg.Connection[Any],
) -> None:
    app.tasks.update(recording.app.tasks)
    for queue in ("heavy", "light"):
        app.enqueue_many("job", [{"n": n} for n in range(400)], queue=queue)
    procs.queuer()
    # One job at a time, so every fetch is one job and the shares are countable.
    procs.worker(queues="heavy:3,light:1", concurrency=1)
    await wait_until(
        lambda: db.execute(b"SELECT count(*) FROM executions").fetchone() >= (240,),
        timeout=120,
        message="240 jobs run",
    )
    rows = db.execute(
        b"SELECT j.queue_name, count(*) AS n FROM ("
        b"  SELECT job_id FROM executions ORDER BY at LIMIT 240) e"
        b" JOIN jobs j ON j.id = e.job_id GROUP BY j.queue_name"
    ).fetchall()
    shares = dict(rows)
    # 3:1 expected (180 / 60); the bounds leave room for chance, not for strict order
    # (240 / 0) or no weighting (120 / 120).
    assert 2.0 <= shares["heavy"] / shares["light"] <= 5.0, shares
