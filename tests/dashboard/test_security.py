"""Access rules: tokens, basic auth, loopback-only without credentials, CSRF, read-only mode,
and apps that share a process or are mounted under a prefix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app
from tests.dashboard.conftest import LOCAL, MakeClient, csrf


def test_a_token_is_required_once_configured(
    make_client: MakeClient, sync_queue: conveyor.SyncQueue
) -> None:
    client = make_client(token="s3cret")
    api = client.get("/api/queues")
    assert api.status_code == 401 and api.json() == {"error": "unauthorized"}
    assert api.headers["www-authenticate"].startswith("Bearer")
    page = client.get(f"/queues/{sync_queue.name}")
    assert page.status_code == 401 and 'name="token"' in page.text
    assert client.get("/api/queues", headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/?token=nope").status_code == 401
    assert client.get("/static/dashboard.css").status_code == 200  # nothing secret

    bearer = {"authorization": "Bearer s3cret"}
    assert client.get("/api/queues", headers=bearer).status_code == 200
    # A bearer token is never sent by a browser on its own: no CSRF token needed.
    paused = client.post(f"/api/queues/{sync_queue.name}/pause", headers=bearer)
    assert paused.status_code == 200 and sync_queue.counts().paused

    login = client.get(f"/queues/{sync_queue.name}?state=dead&token=s3cret", follow_redirects=False)
    assert login.status_code == 303
    assert login.headers["location"] == f"/queues/{sync_queue.name}?state=dead"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "s3cret" not in cookie and "samesite=strict" in cookie.lower()
    assert client.get("/api/queues").status_code == 200  # the session cookie now


def test_the_login_form(make_client: MakeClient) -> None:
    client = make_client(token="s3cret")
    assert client.get("/login").status_code == 200
    wrong = client.post("/login", data={"token": "nope", "next": "/workers"})
    assert wrong.status_code == 401 and "not right" in wrong.text
    right = client.post("/login", data={"token": "s3cret", "next": "/workers"},
                        follow_redirects=False)  # fmt: skip
    assert right.status_code == 303 and right.headers["location"] == "/workers"
    assert client.get("/workers").status_code == 200
    evil = client.post("/login", data={"token": "s3cret", "next": "//evil.example/"},
                       follow_redirects=False)  # fmt: skip
    assert evil.headers["location"] == "/"


def test_basic_auth(make_client: MakeClient) -> None:
    client = make_client(basic_auth=("ops", "pw"))
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", auth=("ops", "wrong")).status_code == 401
    assert client.get("/", auth=("ops", "pw")).status_code == 200


def test_without_credentials_only_loopback_is_served(make_client: MakeClient) -> None:
    remote = make_client(client_options={"client": ("10.1.2.3", 4000)})
    refused = remote.get("/")
    assert refused.status_code == 403 and "loopback" in refused.text
    rebound = make_client(client_options={"base_url": "http://attacker.example"})
    assert rebound.get("/api/queues").status_code == 403  # DNS rebinding
    by_name = make_client(client_options={"base_url": "http://localhost:9809"})
    assert by_name.get("/").status_code == 200
    trusted = make_client(allow_remote=True, client_options={"client": ("10.1.2.3", 4000)})
    assert trusted.get("/").status_code == 200


def test_state_changes_need_post_and_a_csrf_token(
    client: TestClient, sync_queue: conveyor.SyncQueue
) -> None:
    base = f"/queues/{sync_queue.name}"
    assert client.get(f"{base}/pause").status_code == 405
    assert client.post(f"{base}/pause").status_code == 403
    token = csrf(client)
    assert client.post(f"{base}/pause", data={"csrf_token": "forged" * 8}).status_code == 403
    cross = client.post(f"{base}/pause", data={"csrf_token": token},
                        headers={"sec-fetch-site": "cross-site"})  # fmt: skip
    assert cross.status_code == 403 and not sync_queue.counts().paused
    api = f"/api/queues/{sync_queue.name}/pause"
    assert client.post(api).status_code == 403
    assert client.post(api, headers={"x-csrf-token": token}).status_code == 200
    assert sync_queue.counts().paused


def test_read_only_hides_and_refuses_every_action(
    make_client: MakeClient, sync_queue: conveyor.SyncQueue
) -> None:
    job = sync_queue.enqueue("x", None)
    sync_queue.dead_letters.kill(job.id)
    client = make_client(read_only=True)
    token = csrf(client)
    for page in (f"/queues/{sync_queue.name}", f"/queues/{sync_queue.name}/dlq",
                 f"/queues/{sync_queue.name}/jobs/{job.id}"):  # fmt: skip
        html = client.get(page).text
        assert "read-only" in html
        assert 'method="post"' not in html and 'name="ids"' not in html, page
        assert not re.search(r'id="(pause|resume|replay|drop)[^"]*"', html), page
    for path in ("pause", "dlq/replay", "dlq/drop"):
        refused = client.post(f"/queues/{sync_queue.name}/{path}",
                              data={"csrf_token": token, "ids": job.id})  # fmt: skip
        assert refused.status_code == 403 and "read-only" in refused.text
        api = client.post(f"/api/queues/{sync_queue.name}/{path}", json={"ids": [job.id]},
                          headers={"x-csrf-token": token})  # fmt: skip
        assert api.status_code == 403
    assert sync_queue.counts().dead == 1 and not sync_queue.counts().paused


def test_two_apps_in_one_process_do_not_interfere(server_url: str, queue_name: str) -> None:
    first = conveyor.SyncQueue(f"{queue_name}-1", url=server_url)
    second = conveyor.SyncQueue(f"{queue_name}-2", url=server_url)
    try:
        first.enqueue("a", None)
        second.enqueue("b", None)
        one = create_app(server_url, queues=[first.name], token="one")
        two = create_app(server_url, queues=[second.name], token="two", read_only=True)
        with TestClient(one, **LOCAL) as a, TestClient(two, **LOCAL) as b:
            assert a.get("/api/queues", headers={"authorization": "Bearer two"}).status_code == 401
            names_a = [q["queue"] for q in a.get("/api/queues?token=one").json()["queues"]]
            names_b = [q["queue"] for q in b.get("/api/queues?token=two").json()["queues"]]
            assert names_a == [first.name] and names_b == [second.name]
            assert a.post(f"/api/queues/{first.name}/pause",
                          headers={"authorization": "Bearer one"}).status_code == 200  # fmt: skip
            assert b.post(f"/api/queues/{second.name}/pause",
                          headers={"authorization": "Bearer two"}).status_code == 403  # fmt: skip
        assert first.counts().paused and not second.counts().paused
    finally:
        for queue in (first, second):
            queue.obliterate(force=True)
            queue.close()


def test_mounted_under_prefixes(server_url: str, sync_queue: conveyor.SyncQueue) -> None:
    sync_queue.enqueue("a", None)
    operate = create_app(server_url, queues=[sync_queue.name])
    watch = create_app(server_url, queues=[sync_queue.name], read_only=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A mounted app's lifespan is the host's to run: it closes the dashboards' connections.
        async with operate.router.lifespan_context(operate), watch.router.lifespan_context(watch):
            yield

    host = Starlette(routes=[Mount("/ops/conveyor", app=operate), Mount("/ro", app=watch)],
                     lifespan=lifespan)  # fmt: skip
    with TestClient(host, **LOCAL) as client:
        page = client.get(f"/ops/conveyor/queues/{sync_queue.name}")
        assert page.status_code == 200
        links = re.findall(r'(?:href|action|src|data-fragment|data-live-json)="([^"]+)"', page.text)
        assert links and all(link.startswith("/ops/conveyor/") for link in links), links
        assert client.get("/ops/conveyor/static/dashboard.js").status_code == 200
        assert "/ro/queues/" in client.get("/ro/").text
        cookie = page.headers["set-cookie"]
        assert "Path=/ops/conveyor" in cookie
        token = client.cookies.get("conveyor_csrf", path="/ops/conveyor")
        paused = client.post(f"/ops/conveyor/queues/{sync_queue.name}/pause",
                             data={"csrf_token": token}, follow_redirects=False)  # fmt: skip
        assert paused.headers["location"] == f"/ops/conveyor/queues/{sync_queue.name}"
        assert sync_queue.counts().paused


def test_a_token_login_never_redirects_off_site(make_client: MakeClient) -> None:
    client = make_client(token="s3cret")
    for path in ("//evil.example/x", "///evil.example/x", "/\\evil.example/x"):
        login = client.get(f"http://127.0.0.1{path}?token=s3cret&a=1", follow_redirects=False)
        assert login.status_code == 303
        location = login.headers["location"]
        assert location.startswith("/") and location[1] not in "/\\", location  # this site
        assert location.endswith("evil.example/x?a=1"), location


def test_csrf_tokens_are_signed(client: TestClient, sync_queue: conveyor.SyncQueue) -> None:
    api = f"/api/queues/{sync_queue.name}/pause"
    planted = "a" * 43  # a cookie set by another site or subdomain, echoed back
    client.cookies.set("conveyor_csrf", planted, domain="127.0.0.1", path="/")
    assert client.post(api, headers={"x-csrf-token": planted}).status_code == 403
    assert not sync_queue.counts().paused
    client.get("/")  # a page replaces the planted cookie with a signed token
    token = client.cookies.get("conveyor_csrf")
    assert token and token != planted and "." in token
    forged = token.split(".")[0] + "." + "0" * 64
    assert client.post(api, headers={"x-csrf-token": forged}).status_code == 403
    assert client.post(api, headers={"x-csrf-token": token}).status_code == 200
    assert sync_queue.counts().paused


def test_origin_is_checked_when_sec_fetch_site_is_missing(
    make_client: MakeClient, sync_queue: conveyor.SyncQueue
) -> None:
    client = make_client(client_options={"base_url": "http://127.0.0.1:9809"})
    token = csrf(client)
    form = {"csrf_token": token}
    pause = f"/queues/{sync_queue.name}/pause"
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8000"):
        refused = client.post(pause, data=form, headers={"origin": origin})
        assert refused.status_code == 403 and "origin" in refused.text, origin
    assert not sync_queue.counts().paused
    same = client.post(pause, data=form, headers={"origin": "http://127.0.0.1:9809"},
                       follow_redirects=False)  # fmt: skip
    assert same.status_code == 303 and sync_queue.counts().paused


def test_processes_sharing_a_csrf_secret_accept_each_others_tokens(
    make_client: MakeClient, sync_queue: conveyor.SyncQueue
) -> None:
    first, second = make_client(csrf_secret="shared"), make_client(csrf_secret="shared")
    other = make_client()  # a key of its own
    token = csrf(first)
    api = f"/api/queues/{sync_queue.name}/pause"
    for client in (second, other):
        client.cookies.set("conveyor_csrf", token, domain="127.0.0.1", path="/")
    assert other.post(api, headers={"x-csrf-token": token}).status_code == 403
    assert second.post(api, headers={"x-csrf-token": token}).status_code == 200
