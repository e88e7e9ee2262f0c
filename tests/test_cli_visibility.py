"""The visibility commands: status --json with metrics, events, and the Prometheus exporter."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor import defaults
from conveyor.cli import main
from conveyor.job import JobState
from conveyor.prometheus import make_exporter
from conveyor.serving import Server


@pytest.fixture
def filled(server_url: str, queue_name: str) -> Iterator[conveyor.SyncQueue]:
    queue = conveyor.SyncQueue(queue_name, url=server_url)
    queue.enqueue_many([("a", i) for i in range(3)])
    queue.dead_letters.kill(queue.enqueue("b", 1).id)
    yield queue
    queue.obliterate(force=True)
    queue.close()


def test_status_json_has_counts_ages_and_totals(filled: conveyor.SyncQueue) -> None:
    done = CliRunner().invoke(main, ["status", filled.name, "--json"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.output)["queues"]
    assert (row["waiting"], row["dead"]) == (3, 1)
    assert row["oldest_waiting_age"] is not None and row["oldest_dead_age"] is not None
    assert row["workers_alive"] == []


def test_events_tail_from_the_start(filled: conveyor.SyncQueue) -> None:
    done = CliRunner().invoke(main, ["events", filled.name, "--from", "0", "--json",
                                     "--limit", "5"])  # fmt: skip
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.output.splitlines()]
    assert [e["event"] for e in lines] == ["added"] * 4 + ["dead"]
    assert all(e["id"] for e in lines)


def scrape(port: int, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


def samples_of(text: str, queue: str | None = None) -> dict[tuple[str, str | None], float]:
    return {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("queue") == queue
    }


def test_prometheus_endpoint_is_scraped_and_parsed(
    filled: conveyor.SyncQueue, server_url: str
) -> None:
    filled.cancel(filled.enqueue("c", 1).id)
    server = make_exporter(server_url, port=0, queues=[filled.name], token="s3cret")
    with server.running():
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30)
        assert refused.value.code == 401
        refused.value.close()  # an HTTPError holds the response (and its socket) open
        text = scrape(server.port, "s3cret")
    samples = samples_of(text, filled.name)
    assert samples[("conveyor_jobs", "waiting")] == 3
    assert samples[("conveyor_jobs", "dead")] == 1
    assert samples[("conveyor_workers", None)] == 0
    assert ("conveyor_jobs_completed_total", None) in samples
    # Every state counts() reports, cancelled included.
    counts = filled.counts()
    exported = {state: v for (name, state), v in samples.items() if name == "conveyor_jobs"}
    assert exported == {s.value: getattr(counts, s.value) for s in JobState}
    assert exported["cancelled"] == 1
    assert samples_of(text)[("conveyor_up", None)] == 1


def test_a_scrape_is_answered_while_another_connection_idles(
    filled: conveyor.SyncQueue, server_url: str
) -> None:
    server = make_exporter(server_url, port=0, queues=[filled.name])
    with server.running(), socket.create_connection(("127.0.0.1", server.port)) as idle:
        # The idle connection sends nothing: a single-threaded server would wait on it.
        text = scrape(server.port)
        assert samples_of(text, filled.name)[("conveyor_jobs", "waiting")] == 3
        idle.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
        assert samples_of(scrape(server.port))[("conveyor_up", None)] == 1


def test_a_connection_that_sends_no_request_is_closed_after_the_read_timeout(
    server_url: str,
) -> None:
    server = make_exporter(server_url, port=0, read_timeout=0.5)
    with server.running(), socket.create_connection(("127.0.0.1", server.port)) as idle:
        idle.settimeout(30)
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request head that never ends
        assert idle.recv(1024) == b""  # closed by the server, without an answer


def test_a_scrape_during_an_outage_reports_conveyor_up_0() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"redis://127.0.0.1:{probe.getsockname()[1]}"
    server = make_exporter(down, port=0)
    with server.running():
        text = scrape(server.port)
    samples = samples_of(text)
    assert samples[("conveyor_up", None)] == 0
    assert any(name.startswith("python_") for name, _ in samples)  # the process's own metrics
    assert not any(name.startswith("conveyor_jobs") for name, _ in samples)


def test_the_exporter_refuses_a_public_address_without_a_token(server_url: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="token"):
        make_exporter(server_url, host="0.0.0.0", port=0)


@pytest.mark.parametrize("width", [80, 100])
def test_status_fits_the_terminal(filled: conveyor.SyncQueue, width: int) -> None:
    filled.pause()
    done = CliRunner().invoke(main, ["status", filled.name], env={"COLUMNS": str(width)})
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert max(len(line) for line in lines) <= width, done.output
    assert "…" not in done.output, done.output  # nothing cut short
    header = " ".join(lines[:4])
    for column in ("waiting", "delayed", "active", "dead", "workers", "done/min"):
        assert column in header, done.output
    assert filled.name in "".join(line.split()[0] for line in lines[4:] if line.strip())
    assert "paused" in done.output


def test_status_shows_every_state_when_wide(filled: conveyor.SyncQueue) -> None:
    done = CliRunner().invoke(main, ["status", filled.name], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert all(state.value in done.output for state in JobState), done.output


def test_the_exporter_token_variable_and_its_old_name(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Server] = []

    def run(server: Server) -> None:  # instead of serving for ever
        served.append(server)
        server.socket.close()

    monkeypatch.setattr(Server, "run", run)
    args = ["metrics", "--url", server_url, "--host", "0.0.0.0", "--port", "0"]
    unset = {defaults.METRICS_TOKEN_ENV: None, defaults.METRICS_TOKEN_ENV_OLD: None}
    refused = CliRunner().invoke(main, args, env=unset)
    assert refused.exit_code != 0 and defaults.METRICS_TOKEN_ENV in refused.output
    new = CliRunner().invoke(main, args, env={**unset, "CONVEYOR_METRICS_TOKEN": "t"})
    assert new.exit_code == 0, new.output
    assert "token required" in new.stderr and "deprecated" not in new.stderr
    old = CliRunner().invoke(main, args, env={**unset, "CONVEYOR_TOKEN": "t"})
    assert old.exit_code == 0, old.output
    assert "token required" in old.stderr
    assert "CONVEYOR_TOKEN is deprecated; set CONVEYOR_METRICS_TOKEN instead" in old.stderr
    assert len(served) == 2
