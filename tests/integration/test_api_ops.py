"""``/healthz`` and ``/metrics`` on SQLite and real PostgreSQL: no key needed, no tenant data,
and the metrics parse as Prometheus text and reflect the rows."""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from db.engine import open_database
from db.states import CallOutcome, HitlStatus, TaskStatus
from tests.integration import _api, _rows
from tests.integration._api import RecordingNudger, World, world

__all__ = ["world"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.integration


async def test_healthz_is_ok_without_a_key(world: World) -> None:
    response = await world.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_is_503_degraded_when_the_database_is_gone() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = open_database(f"postgresql+asyncpg://nobody@127.0.0.1:{port}/none")
    try:
        async with _api.client_for(_api.build(db, RecordingNudger())) as client:
            response = await client.get("/healthz")
            assert response.status_code == 503
            assert response.json() == {"status": "degraded", "database": "unavailable"}
            # An API request against the dead database is a 503 too, not a 500.
            key = "od_0123456789ab_" + "s" * 43
            listed = await client.get("/api/tasks", headers={"Authorization": f"Bearer {key}"})
            _api.assert_error(listed, 503, "database_unavailable")
    finally:
        await db.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name  # every family has HELP
        for sample in family.samples:
            assert isinstance(sample, Sample)
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_parse_and_reflect_the_rows_without_tenant_data(world: World) -> None:
    empty = await world.client.get("/metrics")
    assert empty.status_code == 200
    assert empty.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _samples(empty.text)[("opendeep_active_calls", ())] == 0

    pending = await _api.create_task(world, world.a)
    active = await _rows.insert_task(world.db, world.a.id, TaskStatus.IN_PROGRESS)
    other = await _rows.insert_task(world.db, world.b.id, TaskStatus.ANALYZING)
    await _rows.insert_call(world.db, active)  # still answered: an active call
    await _rows.insert_question(world.db, active)  # open
    for wait in (2.0, 4.0, 6.0):
        await _api.answered_question(world.db, other, wait)
    figures = [dict(_api.FIGURES, setup_ms=ms) for ms in (1000.0, 2000.0, 3000.0)]
    for i, f in enumerate(figures):
        await _api.insert_ended_call(world.db, other, figures=f, attempt=i + 1)
    await _api.insert_ended_call(world.db, other, outcome=CallOutcome.FAILED_BUSY, attempt=9)

    response = await world.client.get("/metrics")
    text = response.text
    s = _samples(text)
    assert s[("opendeep_active_calls", ())] == 1
    assert s[("opendeep_active_tasks", ())] == 2
    assert s[("opendeep_tasks", (("status", "PENDING"),))] == 1
    assert s[("opendeep_tasks", (("status", "COMPLETED"),))] == 0
    assert s[("opendeep_calls_total", (("outcome", "SUCCESS"),))] == 3
    assert s[("opendeep_calls_total", (("outcome", "FAILED_BUSY"),))] == 1
    assert s[("opendeep_hitl_open_questions", ())] == 1
    assert s[("opendeep_hitl_answer_wait_seconds_count", ())] == 3
    assert s[("opendeep_hitl_answer_wait_seconds_sum", ())] == pytest.approx(12.0, abs=0.05)
    assert s[("opendeep_hitl_answer_wait_seconds", (("quantile", "0.5"),))] == pytest.approx(
        4.0, abs=0.05
    )
    assert s[("opendeep_call_figures_calls", ())] == 3
    assert s[("opendeep_call_setup_ms", (("quantile", "0.5"),))] == 2000.0
    assert s[("opendeep_call_setup_ms", (("quantile", "0.99"),))] == pytest.approx(2980.0)
    assert s[("opendeep_call_voice_to_voice_p99_ms", (("quantile", "0.5"),))] == 900.0
    assert s[("opendeep_call_cpu_seconds_per_call_second", (("quantile", "0.5"),))] == 0.05
    # Calls that did not measure barge-in contribute nothing rather than a fake zero.
    assert not any(name == "opendeep_call_barge_in_p50_ms" for name, _ in s)
    for secret in (str(world.a.id), str(world.b.id), "+1415", pending["id"], "tenant-a"):
        assert secret not in text


async def test_metrics_skip_figures_that_do_not_parse(world: World) -> None:
    task_id = await _rows.insert_task(world.db, world.a.id, TaskStatus.COMPLETED)
    await _api.insert_ended_call(world.db, task_id, figures={"setup_ms": "soon", "bogus": 1})
    await _api.insert_ended_call(world.db, task_id, figures=_api.FIGURES, attempt=2)
    s = _samples((await world.client.get("/metrics")).text)
    assert s[("opendeep_call_figures_calls", ())] == 1
    assert s[("opendeep_call_setup_ms", (("quantile", "0.5"),))] == 1200.0


async def test_questions_of_every_status_count_only_when_pending(world: World) -> None:
    task_id = await _rows.insert_task(world.db, world.a.id, TaskStatus.IN_PROGRESS)
    for status in HitlStatus:
        await _rows.insert_question(world.db, task_id, status)
    s = _samples((await world.client.get("/metrics")).text)
    assert s[("opendeep_hitl_open_questions", ())] == 1
