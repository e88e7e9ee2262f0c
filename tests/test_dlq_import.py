"""Importing dead jobs trusts nothing in the file: every record is checked before any write."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import conveyor
from conveyor import defaults, dlq_ops, dlq_records
from conveyor.cli.dlq import dlq
from tests.cli_runner import invoke

pytestmark = pytest.mark.timeout(60)


def exported(queue: conveyor.SyncQueue, tmp_path: Path, *payloads: Any) -> list[dict[str, Any]]:
    """Kill one job per payload, export them, drop them: the export's records."""
    for payload in payloads:
        assert queue.dead_letters.kill(queue.enqueue("send_email", payload).id)
    backup = tmp_path / "good.jsonl"
    queue.dead_letters.export(backup)
    assert queue.dead_letters.drop(all=True).moved == len(payloads)
    return [json.loads(line) for line in backup.read_text().splitlines()]


def with_fields(record: dict[str, Any], **changes: Any) -> str:
    """The record as a line, with fields changed (``None`` removes a field)."""
    fields = {k: v for k, v in {**record["fields"], **changes}.items() if v is not None}
    return json.dumps({"queue": record["queue"], "fields": fields})


#: One bad record of each kind the import must refuse, and what the refusal says.
BAD: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "5 MB payload": (
        lambda r: with_fields(r, payload=json.dumps("x" * 5_000_000)),
        "payload is 5000002 bytes, over the limit of 524288 bytes",
    ),
    "payload not JSON": (lambda r: with_fields(r, payload="{nope"), "payload is not valid JSON"),
    "empty id": (lambda r: with_fields(r, id=""), "id must be 1-200 characters (got 0)"),
    "10,000-char id": (lambda r: with_fields(r, id="i" * 10_000), "id must be 1-200 characters"),
    "id with a newline": (lambda r: with_fields(r, id="a\nb"), "id must not contain control"),
    "dead time 1e26 (float)": (
        lambda r: with_fields(r, finished_ms="1e26"),
        "got `str` - at `$.fields.finished_ms`",
    ),
    "dead time 10**26": (
        lambda r: with_fields(r, finished_ms=str(10**26)),
        "finished_ms must be an integer in 0..",
    ),
    "band -9e18": (lambda r: with_fields(r, band=str(-9 * 10**18)), "band must be"),
    "no band": (
        lambda r: with_fields(r, band=None),
        "Object missing required field `band` - at `$.fields`",
    ),
    "priority 1.5": (lambda r: with_fields(r, priority="1.5"), "at `$.fields.priority`"),
    "priority out of range": (
        lambda r: with_fields(r, priority="5000"),
        "priority must be an integer in -1000..1000, not 5000",
    ),
    "attempts 0": (lambda r: with_fields(r, max_attempts="0"), "max_attempts must be an integer"),
    "attempt 2.5": (lambda r: with_fields(r, attempt="2.5"), "at `$.fields.attempt`"),
    "no name": (lambda r: with_fields(r, name=None), "missing required field `name`"),
    "unknown field": (lambda r: with_fields(r, evil="1"), "unknown field `evil`"),
    "not dead": (lambda r: with_fields(r, state="waiting"), "state must be 'dead'"),
    "bad history": (lambda r: with_fields(r, history="{}\n"), "history is not valid"),
    "bad backoff": (
        lambda r: with_fields(r, options='{"backoff": {"type": "nope"}}'),
        "options.backoff is not valid",
    ),
    "malformed line": (lambda r: '{"queue": "q", "fields": {', "not valid JSON: Input data"),
    "not an object": (lambda r: "[1, 2]", "Expected `object`, got `array`"),
}


def crafted_file(tmp_path: Path, good: list[dict[str, Any]]) -> tuple[Path, dict[int, str]]:
    """A file with good records around one bad record of each kind: (file, line -> why)."""
    lines = [json.dumps(good[0])]
    expected: dict[int, str] = {}
    for make, why in BAD.values():
        lines.append(make(good[1]))
        expected[len(lines)] = why
        lines.append("")  # blank lines are skipped, but counted
    lines.append(json.dumps(good[2]))
    path = tmp_path / "crafted.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, expected


def nothing_written(queue: conveyor.SyncQueue, client: redis.Redis, ids: list[str]) -> None:
    assert queue.counts().dead == 0
    assert not any(client.exists(queue.keys.job(job_id)) for job_id in ids)
    assert queue.dead_letters.list().jobs == []


def test_every_bad_record_is_refused_by_line_and_nothing_is_written(
    sync_queue: conveyor.SyncQueue, tmp_path: Path, server_url: str
) -> None:
    good = exported(sync_queue, tmp_path, {"n": 1}, {"n": 2}, {"n": 3})
    path, expected = crafted_file(tmp_path, good)
    client = redis.Redis.from_url(server_url)

    with pytest.raises(conveyor.DeadImportError) as refused:
        sync_queue.dead_letters.import_(path)
    problems = dict(refused.value.problems)
    assert sorted(problems) == sorted(expected)  # every bad line, and only those
    for line, why in expected.items():
        assert why in problems[line], (line, problems[line])
    assert isinstance(refused.value, ValueError)
    assert f"{len(BAD)} bad records, nothing imported" in str(refused.value)
    nothing_written(sync_queue, client, [r["fields"]["id"] for r in good])

    result = invoke(dlq, "import", sync_queue.name, str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    message = result.stderr
    assert message.startswith(f"Error: {path}: {len(BAD)} bad records, nothing imported:")
    shown = sorted(expected)[: conveyor.DeadImportError.SHOWN]
    assert all(f"  line {line}: " in message for line in shown)
    nothing_written(sync_queue, client, [r["fields"]["id"] for r in good])

    path.write_text("\n".join(json.dumps(r) for r in good) + "\n")  # the good ones alone
    assert sync_queue.dead_letters.import_(path) == 3
    assert {j.id for j in sync_queue.dead_letters.list().jobs} == {r["fields"]["id"] for r in good}


def test_a_record_without_band_is_refused_so_no_replay_can_lose_it(
    sync_queue: conveyor.SyncQueue, tmp_path: Path
) -> None:
    (good,) = exported(sync_queue, tmp_path, {"n": 1})
    path = tmp_path / "bandless.jsonl"
    path.write_text(with_fields(good, band=None) + "\n")
    result = invoke(dlq, "import", sync_queue.name, str(path))
    assert result.exit_code == 1
    assert "line 1: Object missing required field `band`" in result.stderr
    assert sync_queue.get_job(good["fields"]["id"]) is None
    assert sync_queue.counts().dead == 0


def test_a_repeated_id_and_a_long_list_of_bad_lines(
    sync_queue: conveyor.SyncQueue, tmp_path: Path
) -> None:
    (good,) = exported(sync_queue, tmp_path, {"n": 1})
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(good)] + ["nope"] * 30) + "\n")
    with pytest.raises(conveyor.DeadImportError) as refused:
        sync_queue.dead_letters.import_(path)
    problems = refused.value.problems
    assert problems[0] == (2, f"id {good['fields']['id']!r} repeats line 1")
    assert [line for line, _ in problems] == list(range(2, 33))
    text = str(refused.value)
    assert "  and 11 more, on lines 22, 23," in text and text.endswith(", 32")
    assert sync_queue.counts().dead == 0


def test_times_in_the_future_and_limits_come_from_defaults() -> None:
    now = 1_700_000_000.0
    fields = {"id": "a", "name": "n", "payload": "{}", "priority": "0", "max_attempts": "3",
              "band": str(conveyor.ops.priority_band(0)), "created_ms": "1"}  # fmt: skip
    line = json.dumps({"queue": "q", "fields": fields}).encode()
    options = conveyor.QueueOptions()
    checked = dlq_records.check_line(line, options, now)
    assert checked.died_ms == round(now * 1000)  # no death time: now
    skew = round(defaults.MAX_CLOCK_SKEW * 1000)
    died = dict(fields, finished_ms=str(round(now * 1000) + skew))
    assert dlq_records.check_line(json.dumps({"queue": "q", "fields": died}).encode(),
                                  options, now).died_ms == round(now * 1000) + skew  # fmt: skip
    later = dict(fields, finished_ms=str(round(now * 1000) + skew + 1))
    with pytest.raises(ValueError, match=r"finished_ms must be an integer in 0\.\."):
        dlq_records.check_line(json.dumps({"queue": "q", "fields": later}).encode(), options, now)
    small = conveyor.QueueOptions(max_payload_bytes=10)
    big = dict(fields, payload=json.dumps("x" * 20))
    with pytest.raises(ValueError, match="over the limit of 10 bytes"):
        dlq_records.check_line(json.dumps({"queue": "q", "fields": big}).encode(), small, now)


async def test_an_import_is_written_in_atomic_batches_per_partition(
    server_url: str, queue_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = conveyor.Queue(f"{queue_name}-src", url=server_url)
    target = conveyor.Queue(queue_name, url=server_url, partitions=3)
    try:
        for i in range(9):
            await source.dead_letters.kill((await source.enqueue("send_email", i)).id)
        keyed = await source.enqueue("send_email", 9, partition_key="tenant-7")
        await source.dead_letters.kill(keyed.id)
        backup = tmp_path / "dead.jsonl"
        assert await source.dead_letters.export(backup) == 10
        monkeypatch.setattr(dlq_ops, "BATCH", 2)
        jobs = dlq_records.read_file(backup, target.options)
        batches = conveyor.partitions.import_batches(await target.connected_parts(), jobs)
        assert all(len(batch) <= 2 for _, batch in batches)
        assert sum(len(batch) for _, batch in batches) == 10
        assert await target.dead_letters.import_(backup) == 10
        assert (await target.counts()).dead == 10
        for job in (await target.dead_letters.list(limit=20)).jobs:  # each in its partition
            key = "tenant-7" if job.id == keyed.id else job.id  # a partition key wins
            assert job.queue == f"{queue_name}~{conveyor.keys.partition_for(key, 3)}"
        assert await target.dead_letters.import_(backup) == 0  # twice is harmless
    finally:
        for q in (source, target):
            await q.obliterate(force=True)
            await q.close()
