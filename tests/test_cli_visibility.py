"""The visibility commands: status --json with metrics, events, and the Prometheus exporter."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor.cli import main
from conveyor.prometheus import make_exporter


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


def test_prometheus_endpoint_is_scraped_and_parsed(
    filled: conveyor.SyncQueue, server_url: str
) -> None:
    server = make_exporter(server_url, port=0, queues=[filled.name], token="s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        refused.value.close()  # an HTTPError holds the response (and its socket) open
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("queue") == filled.name
    }
    assert samples[("conveyor_jobs", "waiting")] == 3
    assert samples[("conveyor_jobs", "dead")] == 1
    assert samples[("conveyor_workers", None)] == 0
    assert ("conveyor_jobs_completed_total", None) in samples


def test_the_exporter_refuses_a_public_address_without_a_token(server_url: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="token"):
        make_exporter(server_url, host="0.0.0.0", port=0)
