"""A partitioned queue in the dashboard: one queue in every page, action and API answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor import JobState
from tests.dashboard.conftest import MakeClient, csrf, make_dead

PARTITIONS = 4


@pytest.fixture
def partitioned(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    q = conveyor.SyncQueue(queue_name, url=server_url, partitions=PARTITIONS)
    q.counts()  # declares the partitions
    yield q
    q.obliterate(force=True)
    q.close()


def spread(queue: conveyor.SyncQueue, count: int, name: str = "job") -> list[conveyor.Job]:
    """``count`` jobs enqueued one by one, so they go round robin over every partition."""
    jobs = [queue.enqueue(name, {"n": n}) for n in range(count)]
    assert len({job.queue for job in jobs}) == min(count, PARTITIONS)
    return jobs


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]*)"', html)


def walk(client: TestClient, url: str, **params: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every job of an API list, page by page; and the cursors it handed out."""
    jobs: list[dict[str, Any]] = []
    cursors: list[Any] = []
    cursor: Any = 0
    while cursor is not None:
        response = client.get(url, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["jobs"]) <= params.get("limit", 50)
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        cursors.append(cursor)
        assert len(cursors) < 100
    return jobs, cursors


def test_the_overview_lists_a_partitioned_queue_once(
    make_client: MakeClient, partitioned: conveyor.SyncQueue, server_url: str
) -> None:
    jobs = spread(partitioned, 10)
    for job in jobs[:2]:
        assert partitioned.dead_letters.kill(job.id)
    name = partitioned.name
    with conveyor.SyncQueue(f"{name}~1", url=server_url) as part:  # a partition, by its own name
        assert part.counts().waiting == 2

    everything = make_client(queues=None)
    summaries = [q for q in everything.get("/api/queues").json()["queues"]
                 if q["queue"].startswith(name)]  # fmt: skip
    assert [q["queue"] for q in summaries] == [name]
    (summary,) = summaries
    assert summary["partitions"] == PARTITIONS and summary["dlq_depth"] == 2
    assert summary["counts"]["waiting"] == 8 and summary["counts"]["dead"] == 2

    overview = everything.get("/").text
    row = re.search(rf'<tr data-queue="{name}">(.*?)</tr>', overview, re.S)
    assert row is not None and f"{PARTITIONS} partitions" in row.group(1)
    assert 'data-field="counts.waiting">8<' in row.group(1)
    assert f'data-queue="{name}~' not in overview and f"{name}~1 throughput" not in overview
    # A partition addressed by its own name still reads as the plain queue it is.
    assert everything.get(f"/api/queues/{name}~1").json()["counts"]["waiting"] == 2


def test_the_queue_page_pages_across_partitions(
    client: TestClient, partitioned: conveyor.SyncQueue
) -> None:
    jobs = spread(partitioned, 23)
    name = partitioned.name
    url = f"/api/queues/{name}/jobs"
    listed, cursors = walk(client, url, state="waiting", limit=5)
    expected = [job.id for job in partitioned.list_jobs("waiting", limit=100)]
    assert [job["id"] for job in listed] == expected  # each once, in the queue's order
    assert sorted(expected) == sorted(job.id for job in jobs)
    assert {job["queue"] for job in listed} == {f"{name}~{i}" for i in range(PARTITIONS)}
    assert len(cursors) == 5 and all(isinstance(c, str) and "." in c for c in cursors[:-1])

    page = client.get(f"/queues/{name}", params={"limit": 10})
    assert page.status_code == 200
    assert rows(page.text) == expected[:10]
    assert 'data-field="counts.waiting">23<' in page.text and 'id="partitions"' in page.text
    assert '<th class="num">Partition</th>' in page.text
    following = re.search(r'href="([^"]*)" id="next-page"', page.text)
    assert following is not None
    second = client.get(following.group(1).replace("&amp;", "&"))
    assert rows(second.text) == expected[10:20] and ">« First<" in second.text
    assert "Previous</a>" not in second.text  # a partitioned cursor only goes forward
    fragment = client.get(f"/queues/{name}/rows", params={"cursor": cursors[0], "limit": 5})
    assert rows(fragment.text) == expected[5:10] and "<html" not in fragment.text

    for bad in ("-1", "1.2", "x.0.0.0", "1.2.3.4.5"):
        assert client.get(url, params={"cursor": bad}).status_code == 400
        assert client.get(f"/queues/{name}", params={"cursor": bad}).status_code == 400


def test_finished_jobs_page_newest_first_and_names_filter_across_partitions(
    client: TestClient, partitioned: conveyor.SyncQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor.dashboard.reads as reads

    killed = spread(partitioned, 9)
    for job in killed:
        partitioned.dead_letters.kill(job.id)
    url = f"/api/queues/{partitioned.name}/jobs"
    dead, _ = walk(client, url, state="dead", limit=4)
    assert sorted(job["id"] for job in dead) == sorted(job.id for job in killed)
    died = [job["finished_at"] for job in dead]
    assert died == sorted(died, reverse=True)

    needles = [partitioned.enqueue("needle", n).id for n in range(6)]
    spread(partitioned, 40, name="noise")
    monkeypatch.setattr(reads, "NAME_SCAN", 24)  # 6 entries per partition and page
    monkeypatch.setattr(reads, "_CHUNK", 4)
    found, cursors = walk(client, url, state="waiting", name="needle", limit=2)
    assert sorted(job["id"] for job in found) == sorted(needles)  # none skipped or repeated
    assert len(cursors) >= 3


def test_search_by_id_and_the_job_page_of_any_partition(
    client: TestClient, partitioned: conveyor.SyncQueue, server_url: str
) -> None:
    dead_ids = make_dead(partitioned, server_url, [{"n": n} for n in range(PARTITIONS)])
    jobs = spread(partitioned, 4)  # after the worker is gone: these stay waiting
    name = partitioned.name
    target = next(job for job in jobs if job.queue != f"{name}~0")
    found = client.get(f"/queues/{name}", params={"id": target.id}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/queues/{name}/jobs/{target.id}"
    missing = client.get(f"/queues/{name}", params={"id": "nope"})
    assert "No job with id <code>nope</code>" in missing.text

    page = client.get(found.headers["location"])
    assert page.status_code == 200
    assert f'id="partition">{target.queue}<' in page.text
    timeline = page.text.split('id="timeline"', 1)[1]
    assert "added" in timeline and "No event of this job" not in timeline

    assert len({partitioned.get_job(i).queue for i in dead_ids}) > 1  # type: ignore[union-attr]
    for dead_id in dead_ids:
        detail = client.get(f"/api/queues/{name}/jobs/{dead_id}").json()
        assert detail["state"] == "dead" and detail["queue"].startswith(f"{name}~")
        kinds = [e["event"] for e in detail["events"]]
        assert kinds[0] == "added" and kinds[-1] == "dead"
        assert all(e["job_id"] == dead_id for e in detail["events"])
    html = client.get(f"/queues/{name}/jobs/{dead_ids[-1]}").text
    assert 'id="replay"' in html and "cannot handle" in html
    assert client.get(f"/queues/{name}/jobs/nope").status_code == 404


def test_the_dead_letter_page_lists_replays_and_drops_across_partitions(
    client: TestClient, partitioned: conveyor.SyncQueue, server_url: str
) -> None:
    failed = make_dead(partitioned, server_url, [{"n": n} for n in range(4)], attempts=1)
    killed = [job.id for job in spread(partitioned, 4, name="other")]
    for job_id in killed:
        partitioned.dead_letters.kill(job_id)
    name = partitioned.name
    dlq = f"/queues/{name}/dlq"
    page = client.get(dlq)
    assert sorted(rows(page.text)) == sorted(failed + killed)
    assert 'data-field="counts.dead">8<' in page.text
    first = client.get(dlq, params={"limit": 5})
    assert len(rows(first.text)) == 5 and 'id="next-page"' in first.text

    token = csrf(client)
    chosen = [failed[0], killed[1], killed[2]]
    assert len({partitioned.get_job(i).queue for i in chosen}) > 1  # type: ignore[union-attr]
    form = {"csrf_token": token, "scope": "selected", "ids": chosen}
    replayed = client.post(f"{dlq}/replay", data=form, follow_redirects=False)
    assert replayed.headers["location"] == f"{dlq}?done=replayed&count=3"
    counts = partitioned.counts()
    assert counts.waiting == 3 and counts.dead == 5

    matching = {"csrf_token": token, "scope": "matching", "name": "other"}
    confirm = client.post(f"{dlq}/drop", data=matching)
    assert "Drop 2 dead jobs?" in confirm.text and partitioned.counts().dead == 5
    dropped = client.post(f"{dlq}/drop", data={**matching, "confirm": "yes"})
    assert "Dropped 2 jobs." in dropped.text and partitioned.counts().dead == 3

    headers = {"x-csrf-token": token}
    edited = client.post(f"/api/{dlq[1:]}/replay", headers=headers,
                         json={"ids": [failed[3]], "payload": {"n": "fixed"}})  # fmt: skip
    assert edited.json()["moved"] == 1
    job = partitioned.get_job(failed[3])
    assert job is not None and job.state is JobState.WAITING and job.payload == {"n": "fixed"}
    rest = client.post(f"/api/{dlq[1:]}/replay", headers=headers, json={"all": True})
    assert rest.json()["moved"] == 2 and partitioned.counts().dead == 0


def test_pause_and_resume_apply_to_every_partition(
    client: TestClient, partitioned: conveyor.SyncQueue, server_url: str
) -> None:
    spread(partitioned, PARTITIONS)
    token = csrf(client)
    base = f"/queues/{partitioned.name}"
    paused = client.post(f"{base}/pause", data={"csrf_token": token})
    assert 'id="resume"' in paused.text

    def each_paused() -> list[bool]:
        states = []
        for index in range(PARTITIONS):
            with conveyor.SyncQueue(f"{partitioned.name}~{index}", url=server_url) as part:
                states.append(part.counts().paused)
        return states

    assert each_paused() == [True] * PARTITIONS
    client.post(f"/api{base}/resume", headers={"x-csrf-token": token})
    assert each_paused() == [False] * PARTITIONS


def test_read_only_and_csrf_guard_a_partitioned_queue_too(
    make_client: MakeClient, partitioned: conveyor.SyncQueue
) -> None:
    (job,) = spread(partitioned, 1)
    partitioned.dead_letters.kill(job.id)
    dlq = f"/queues/{partitioned.name}/dlq"
    viewer = make_client(read_only=True)
    assert 'name="ids"' not in viewer.get(dlq).text
    assert viewer.post(f"{dlq}/replay", data={"ids": job.id}).status_code == 403
    plain = make_client()
    assert plain.post(f"{dlq}/replay", data={"ids": job.id}).status_code == 403  # no CSRF
    assert partitioned.counts().dead == 1


def test_an_unpartitioned_queue_keeps_its_offset_cursor(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    sync_queue.enqueue_many([("job", n) for n in range(7)])
    url = f"/api/queues/{sync_queue.name}/jobs"
    assert client.get(url, params={"limit": 3}).json()["next_cursor"] == 3
    assert client.get(url, params={"limit": 3, "cursor": 6}).json()["next_cursor"] is None
    page = client.get(f"/queues/{sync_queue.name}", params={"cursor": 3, "limit": 3}).text
    assert len(rows(page)) == 3 and "Partition" not in page and 'id="partitions"' not in page
    assert "cursor=0&amp;limit=3" in page and "Previous</a>" in page
