"""The JSON API with Starlette's test client over the real test server."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import conveyor
import conveyor.metrics
from conveyor import JobState, defaults
from conveyor.cli import main
from tests.dashboard.conftest import MakeClient, csrf, make_dead, run_worker_until


def test_queues_and_queue_counts(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.enqueue_many([("a", i) for i in range(3)])
    sync_queue.enqueue("b", 1, delay=3600)
    sync_queue.enqueue("b", 2, delay=3600)
    killed = sync_queue.enqueue("c", None)
    assert sync_queue.dead_letters.kill(killed.id)

    (summary,) = client.get("/api/queues").json()["queues"]
    assert summary["queue"] == sync_queue.name
    counts = {"waiting": 3, "delayed": 2, "active": 0, "completed": 0, "dead": 1}
    assert summary["counts"] == {**summary["counts"], **counts}
    assert summary["dlq_depth"] == 1 and summary["paused"] is False
    assert summary["workers_alive"] == 0 and summary["oldest_waiting_age"] >= 0

    detail = client.get(f"/api/queues/{sync_queue.name}", params={"window": 600}).json()
    assert detail["counts"]["waiting"] == 3
    assert len(detail["throughput"]) == 10
    assert set(detail["throughput"][0]) == {"minute", "completed", "failed", "dead"}


def test_jobs_are_paginated_newest_first_for_finished_states(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    ids = [sync_queue.enqueue("job", i).id for i in range(7)]
    for job_id in ids:
        sync_queue.dead_letters.kill(job_id)
    url = f"/api/queues/{sync_queue.name}/jobs"
    seen: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = client.get(url, params={"state": "dead", "limit": 3, "cursor": cursor}).json()
        assert len(page["jobs"]) <= 3
        seen += page["jobs"]
        cursor = page["next_cursor"]
    assert sorted(job["id"] for job in seen) == sorted(ids)  # each once
    died = [job["finished_at"] for job in seen]
    assert died == sorted(died, reverse=True)  # newest first

    waiting = [sync_queue.enqueue("job", i).id for i in range(4)]
    page = client.get(url, params={"state": "waiting", "limit": 3}).json()
    assert [j["id"] for j in page["jobs"]] == waiting[:3] and page["next_cursor"] == 3
    assert client.get(url, params={"state": "nonsense"}).status_code == 400
    assert client.get(url, params={"limit": "x"}).status_code == 400


def test_name_filter_scans_in_bounded_steps(
    client: TestClient, sync_queue: conveyor.SyncQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor.dashboard.reads as reads

    sync_queue.enqueue_many([("noise", i) for i in range(30)] + [("needle", 0)]
                            + [("noise", i) for i in range(30)] + [("needle", 1)])  # fmt: skip
    url = f"/api/queues/{sync_queue.name}/jobs"
    page = client.get(url, params={"name": "needle"}).json()
    assert [j["name"] for j in page["jobs"]] == ["needle", "needle"]
    assert page["next_cursor"] is None

    monkeypatch.setattr(reads, "NAME_SCAN", 20)
    monkeypatch.setattr(reads, "_CHUNK", 10)
    found: list[int] = []
    cursor: int | None = 0
    steps = 0
    while cursor is not None:
        page = client.get(url, params={"name": "needle", "cursor": cursor}).json()
        found += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        steps += 1
    assert len(found) == 2 and steps >= 3  # each page looked at 20 entries at most


def test_job_detail_has_history_and_timeline(
    client: TestClient, sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    (dead_id,) = make_dead(sync_queue, server_url, [{"to": "ada"}])
    job = client.get(f"/api/queues/{sync_queue.name}/jobs/{dead_id}").json()
    assert job["state"] == "dead" and job["payload"] == {"to": "ada"}
    assert job["dead_reason"] == "attempts_exhausted"
    assert [a["attempt"] for a in job["history"]] == [1, 2]
    assert "ValueError" in job["history"][0]["error"]["traceback"]
    assert job["logs"] and "about to fail" in job["logs"][0]
    kinds = [e["event"] for e in job["events"]]
    assert kinds[0] == "added" and kinds[-1] == "dead" and "active" in kinds
    assert all(e["job_id"] == dead_id for e in job["events"])
    missing = client.get(f"/api/queues/{sync_queue.name}/jobs/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "no such job"}


def test_dlq_filters(client: TestClient, sync_queue: conveyor.SyncQueue, server_url: str) -> None:
    make_dead(sync_queue, server_url, [1, 2], attempts=1)
    killed = sync_queue.enqueue("other", None)
    sync_queue.dead_letters.kill(killed.id)
    url = f"/api/queues/{sync_queue.name}/dlq"

    def ids(**params: str) -> list[str]:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [job["name"] for job in response.json()["jobs"]]

    assert ids() == ["other", "boom", "boom"]
    assert ids(reason="killed") == ["other"]
    assert ids(error_type="ValueError") == ["boom", "boom"]
    assert ids(name="boom", reason="attempts_exhausted") == ["boom", "boom"]
    assert ids(since="1h") == ["other", "boom", "boom"]
    assert ids(until="2000-01-01T00:00") == []
    assert client.get(url, params={"since": "yesterday"}).status_code == 400
    assert client.get(url, params={"reason": "bored"}).status_code == 400
    page = client.get(url, params={"limit": 2}).json()
    assert len(page["jobs"]) == 2 and page["next_cursor"] is not None


def test_api_actions(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    ids = [sync_queue.enqueue("job", {"n": i}).id for i in range(4)]
    for job_id in ids:
        sync_queue.dead_letters.kill(job_id)
    base = f"/api/queues/{sync_queue.name}"
    headers = {"x-csrf-token": csrf(client)}

    dry = client.post(f"{base}/dlq/replay", json={"all": True, "dry_run": True}, headers=headers)
    assert dry.json()["matched"] == 4 and dry.json()["moved"] == 0
    one = client.post(f"{base}/dlq/replay", json={"ids": [ids[0]], "payload": {"n": 99}},
                      headers=headers)  # fmt: skip
    assert one.json()["moved"] == 1
    replayed = sync_queue.get_job(ids[0])
    assert replayed is not None and replayed.state is JobState.WAITING
    assert replayed.payload == {"n": 99}
    dropped = client.post(f"{base}/dlq/drop", json={"filter": {"reason": "killed"}},
                          headers=headers)  # fmt: skip
    assert dropped.json()["moved"] == 3 and sync_queue.counts().dead == 0

    bad = client.post(f"{base}/dlq/drop", json={"ids": ["x"], "all": True}, headers=headers)
    assert bad.status_code == 400
    assert client.post(f"{base}/dlq/drop", content=b"[1", headers=headers).status_code == 400

    assert client.post(f"{base}/pause", headers=headers).json() == {
        "queue": sync_queue.name, "paused": True}  # fmt: skip
    assert sync_queue.counts().paused
    client.post(f"{base}/resume", headers=headers)
    assert not sync_queue.counts().paused


def test_unknown_queues_are_not_shown(
    make_client: MakeClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.enqueue("x", None)
    everything = make_client(queues=None)
    names = [q["queue"] for q in everything.get("/api/queues").json()["queues"]]
    assert sync_queue.name in names
    assert everything.get(f"/api/queues/{sync_queue.name}").status_code == 200
    assert everything.get("/api/queues/never-made-xyz").status_code == 404
    assert everything.get("/api/queues/bad name!").status_code == 404
    assert everything.get("/queues/never-made-xyz").status_code == 404
    only = make_client(queues=["other-queue"])
    assert only.get(f"/api/queues/{sync_queue.name}").status_code == 404


def test_api_refuses_non_boolean_flags_and_non_json_bodies(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    for _ in range(3):
        sync_queue.dead_letters.kill(sync_queue.enqueue("job", None).id)
    drop = f"/api/queues/{sync_queue.name}/dlq/drop"
    headers = {"x-csrf-token": csrf(client)}
    for body in ({"all": True, "dry_run": "true"}, {"all": "true"}, {"all": True, "dry_run": 1},
                 {"all": True, "dry_run": None}):  # fmt: skip
        refused = client.post(drop, json=body, headers=headers)
        assert refused.status_code == 400, (body, refused.text)
        assert "true or false" in refused.json()["error"]
    form = client.post(drop, data={"all": "true"}, headers=headers)
    assert form.status_code == 400 and "application/json" in form.json()["error"]
    form = client.post(drop, data={"all": "true", "csrf_token": headers["x-csrf-token"]})
    assert form.status_code == 400
    assert sync_queue.counts().dead == 3  # nothing dropped
    dry = client.post(drop, json={"all": True, "dry_run": True}, headers=headers)
    assert dry.status_code == 200 and dry.json()["matched"] == 3
    assert sync_queue.counts().dead == 3


def test_api_caps_the_body_and_the_ids_per_request(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.dead_letters.kill(sync_queue.enqueue("job", None).id)
    drop = f"/api/queues/{sync_queue.name}/dlq/drop"
    headers = {"x-csrf-token": csrf(client), "content-type": "application/json"}
    huge = b'{"ids": [' + b'"x",' * (defaults.API_MAX_BODY_BYTES // 4) + b'"x"]}'
    declared = client.post(drop, content=huge, headers=headers)
    assert declared.status_code == 413 and "larger than" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # sent without a Content-Length
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = client.post(drop, content=chunks(), headers=headers)
    assert streamed.status_code == 413 and "larger than" in streamed.json()["error"]
    many = client.post(drop, json={"ids": ["x"] * (defaults.API_MAX_IDS + 1)}, headers=headers)
    assert many.status_code == 400 and f"at most {defaults.API_MAX_IDS}" in many.json()["error"]
    form = client.post(f"/queues/{sync_queue.name}/dlq/drop",
                       data={"csrf_token": headers["x-csrf-token"],
                             "ids": ["x"] * (defaults.API_MAX_IDS + 1)})  # fmt: skip
    assert form.status_code == 400
    assert sync_queue.counts().dead == 1


def test_completed_last_minute_is_the_last_full_minute_everywhere(
    client: TestClient, sync_queue: conveyor.SyncQueue, server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    n = 7
    ids = [job.id for job in sync_queue.enqueue_many([("ok", i) for i in range(n)])]
    run_worker_until(sync_queue.name, server_url, lambda: sync_queue.counts().completed == n)
    finished = [sync_queue.get_job(job_id) for job_id in ids]
    minutes = Counter(int(job.finished_at // 60) for job in finished if job and job.finished_at)
    assert sum(minutes.values()) == n
    last = max(minutes)
    # The per-minute totals add up to the jobs completed.
    window = sync_queue.metrics(window=600).minutes
    assert {m.minute: m.completed for m in window if m.completed} == dict(minutes)

    # One minute on, the minute they finished in is the last full minute.
    clock = SimpleNamespace(time=lambda: (last + 1) * 60 + 30.0)
    monkeypatch.setattr(conveyor.metrics, "time", clock)
    expected = minutes[last]  # n, unless the jobs straddled a minute boundary
    status = CliRunner().invoke(main, ["status", sync_queue.name, "--url", server_url, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["queues"][0]["completed_last_minute"] == expected
    (summary,) = client.get("/api/queues").json()["queues"]
    assert summary["completed_last_minute"] == expected
    assert client.get(f"/api/queues/{sync_queue.name}").json()["completed_last_minute"] == expected
    assert f'data-field="completed_last_minute">{expected}<' in client.get("/").text
    # While that minute is still the current one, it is not counted yet.
    monkeypatch.setattr(conveyor.metrics, "time", SimpleNamespace(time=lambda: last * 60 + 59.0))
    (summary,) = client.get("/api/queues").json()["queues"]
    assert summary["completed_last_minute"] == minutes.get(last - 1, 0)
