"""What the server confirms when a durable enqueue waits on ``WAITAOF``.

Valkey (the embedded 8.1.8, and at least up to 9.1.2) acknowledges ``WAITAOF 1 0`` under
``appendfsync everysec`` as soon as the write reached the AOF file, before it is fsynced:
the bug that redis/redis#13793 fixed in Redis 8.0. The write then survives a crash of the
server process, not a power failure within the next second (docs/faults.md). This test
says so in code: it fails the day the embedded server waits for the fsync, so the docs and
``Durable`` can then promise more.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import PrivateServer

pytestmark = pytest.mark.faults


@pytest.mark.timeout(60)
@pytest.mark.xfail(
    strict=True, reason="Valkey answers WAITAOF before the fsync under everysec (redis#13793)"
)
async def test_waitaof_waits_for_the_fsync_under_everysec(private_server: PrivateServer) -> None:
    async with private_server.client() as client:
        started = time.monotonic()
        for n in range(3):
            await client.set(f"durable-{n}", "v")
            local, _ = await client.execute_command("WAITAOF", 1, 0, 5000)
            assert int(local) == 1
        took = time.monotonic() - started
    # Under everysec the server fsyncs about once a second, and each WAITAOF covers a write
    # made after the previous one returned: honouring all three takes about two seconds.
    assert took >= 1.0, f"three writes confirmed fsynced within {took * 1000:.1f} ms"
