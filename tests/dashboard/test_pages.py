"""The HTML pages and their form actions, with Starlette's test client."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

import conveyor
from conveyor import JobState
from tests.dashboard.conftest import csrf, make_dead


def test_overview_queue_and_workers_pages(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.enqueue_many([("a", i) for i in range(3)])
    overview = client.get("/")
    assert overview.status_code == 200
    row = re.search(rf'<tr data-queue="{sync_queue.name}">(.*?)</tr>', overview.text, re.S)
    assert row is not None and 'data-field="counts.waiting">3<' in row.group(1)
    assert "<svg" in overview.text and "running" in row.group(1)
    assert overview.headers["content-security-policy"].startswith("default-src 'self'")

    page = client.get(f"/queues/{sync_queue.name}")
    assert page.status_code == 200 and page.text.count('<tr data-job="') == 3
    rows = client.get(f"/queues/{sync_queue.name}/rows", params={"state": "waiting"})
    assert rows.text.count('<tr data-job="') == 3 and "<html" not in rows.text
    assert "No live worker" in client.get("/workers").text
    assert client.get("/charts").text.count("<svg") == 1


def test_search_by_id_and_filter_by_name(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    jobs = sync_queue.enqueue_many([("a", 1), ("b", 2), ("a", 3)])
    base = f"/queues/{sync_queue.name}"
    found = client.get(base, params={"id": jobs[1].id}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"{base}/jobs/{jobs[1].id}"
    missing = client.get(base, params={"id": "nope"})
    assert "No job with id <code>nope</code>" in missing.text
    named = client.get(base, params={"name": "a"})
    assert named.text.count('<tr data-job="') == 2 and jobs[1].id not in named.text


def test_job_page_shows_everything_escaped(
    client: TestClient, sync_queue: conveyor.SyncQueue, server_url: str
) -> None:
    evil = "<script>alert('x')</script>"
    (dead_id,) = make_dead(sync_queue, server_url, [{"html": evil}])
    page = client.get(f"/queues/{sync_queue.name}/jobs/{dead_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "attempts_exhausted" in page.text and "Traceback" in page.text
    assert "cannot handle" in page.text and "about to fail" in page.text
    timeline = page.text.split('id="timeline"', 1)[1]
    assert "added" in timeline and "dead" in timeline
    assert 'id="replay"' in page.text and 'id="edited-payload"' in page.text

    sync_queue.enqueue("x", evil, id="a/b <c>?d#e")
    page = client.get(f"/queues/{sync_queue.name}")
    link = re.search(r'href="([^"]*jobs/a[^"]*)"', page.text)
    assert link is not None and link.group(1).endswith("/jobs/a%2Fb%20%3Cc%3E%3Fd%23e")
    detail = client.get(link.group(1))
    assert detail.status_code == 200 and 'id="job-id">a/b &lt;c&gt;?d#e<' in detail.text


def test_replay_and_drop_a_selection(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    ids = [sync_queue.enqueue("job", i).id for i in range(3)]
    for job_id in ids:
        sync_queue.dead_letters.kill(job_id)
    token = csrf(client)
    dlq = f"/queues/{sync_queue.name}/dlq"
    form = {"csrf_token": token, "scope": "selected", "ids": ids[:2]}
    replayed = client.post(f"{dlq}/replay", data=form, follow_redirects=False)
    assert replayed.status_code == 303
    assert replayed.headers["location"] == f"{dlq}?done=replayed&count=2"
    assert sync_queue.counts().waiting == 2
    page = client.get(replayed.headers["location"])
    assert "Replayed 2 jobs" in page.text and page.text.count('name="ids"') == 1
    dropped = client.post(f"{dlq}/drop", data={"csrf_token": token, "ids": ids[2]})
    assert "Dropped 1 job." in dropped.text and sync_queue.counts().dead == 0
    nothing = client.post(f"{dlq}/drop", data={"csrf_token": token})
    assert "Select some jobs first" in nothing.text


def test_everything_matching_asks_first_and_says_how_many(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    for name in ("x", "x", "x", "y"):
        sync_queue.dead_letters.kill(sync_queue.enqueue(name, None).id)
    token = csrf(client)
    form = {"csrf_token": token, "scope": "matching", "name": "x"}
    dlq = f"/queues/{sync_queue.name}/dlq"
    confirm = client.post(f"{dlq}/drop", data=form)
    assert confirm.status_code == 200 and "Drop 3 dead jobs?" in confirm.text
    assert sync_queue.counts().dead == 4  # nothing happened yet
    done = client.post(f"{dlq}/drop", data={**form, "confirm": "yes"}, follow_redirects=False)
    assert done.headers["location"] == f"{dlq}?name=x&done=dropped&count=3"
    assert sync_queue.counts().dead == 1
    none_left = client.post(f"{dlq}/replay", data=form)
    assert "Nothing to replay" in none_left.text
    everything = client.post(f"{dlq}/replay", data={"csrf_token": token, "scope": "matching",
                                                     "confirm": "yes"})  # fmt: skip
    assert "Replayed 1 job:" in everything.text and sync_queue.counts().waiting == 1


def test_edit_payload_then_replay(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    job = sync_queue.enqueue("job", {"to": "wrong"})
    sync_queue.dead_letters.kill(job.id)
    token = csrf(client)
    dlq = f"/queues/{sync_queue.name}/dlq"
    bad = client.post(f"{dlq}/replay", data={"csrf_token": token, "ids": job.id,
                                             "payload": "{not json", "back": "job"})  # fmt: skip
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    good = client.post(f"{dlq}/replay", data={"csrf_token": token, "ids": job.id, "back": "job",
                                              "payload": '{"to": "right"}'},
                       follow_redirects=False)  # fmt: skip
    assert good.headers["location"] == f"/queues/{sync_queue.name}/jobs/{job.id}"
    again = sync_queue.get_job(job.id)
    assert (
        again is not None and again.state is JobState.WAITING and again.payload == {"to": "right"}
    )


def test_pause_and_resume(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.enqueue("x", None)
    token = csrf(client)
    base = f"/queues/{sync_queue.name}"
    assert 'id="pause"' in client.get(base).text
    paused = client.post(f"{base}/pause", data={"csrf_token": token})
    assert sync_queue.counts().paused and 'id="resume"' in paused.text
    overview = client.post(f"{base}/resume", data={"csrf_token": token, "back": "overview"},
                           follow_redirects=False)  # fmt: skip
    assert overview.headers["location"] == "/" and not sync_queue.counts().paused


def test_bad_input_gets_a_page_not_a_traceback(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.enqueue("x", None)
    base = f"/queues/{sync_queue.name}"
    assert client.get(base, params={"state": "nope"}).status_code == 400
    assert client.get(base, params={"cursor": "-1"}).status_code == 400
    bad_filter = client.get(f"{base}/dlq", params={"since": "soon"})
    assert bad_filter.status_code == 200 and "neither a time" in bad_filter.text
    assert client.get(f"{base}/jobs/missing").status_code == 404


def test_the_queue_page_lists_schedules_with_their_next_run(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.schedule(conveyor.Schedule(id="nightly-<b>", name="cleanup", cron="0 3 * * *",
                                          timezone="Europe/Paris"))  # fmt: skip
    (entry,) = sync_queue.schedules()
    page = client.get(f"/queues/{sync_queue.name}")
    assert page.status_code == 200
    assert "nightly-&lt;b&gt;" in page.text and "0 3 * * *" in page.text
    assert "Europe/Paris" in page.text and entry.next_run is not None
