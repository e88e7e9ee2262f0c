"""The seam to redis-py: each function of conveyor.compat works both ways.

Every test runs twice: with the redis-py internals this version has ("internal") and with
only the public API ("public", what CONVEYOR_REDIS_COMPAT=public or a redis-py without the
internal would choose), against the real server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

from conveyor import compat, connection, defaults, embedded
from conveyor.errors import ConfigurationError

ECHO = "return {ARGV[1], ARGV[2], ARGV[3], ARGV[4], #KEYS}"


@pytest.fixture(params=["internal", "public"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    internal = request.param == "internal"
    monkeypatch.setattr(compat, "LEAN", internal)
    monkeypatch.setattr(compat, "USE_STREAM_WRITER", internal)
    monkeypatch.setattr(compat, "USE_MAKE_CONNECTION", internal)
    parsers = compat._detect_url_parsers() if internal else None
    monkeypatch.setattr(compat, "_URL_PARSERS", parsers)
    yield request.param


@pytest.fixture
def url(valkey_server: embedded.ServerInfo) -> str:
    return valkey_server.url


def test_this_redis_py_has_every_internal_the_lean_path_uses() -> None:
    """On redis-py 8.x each internal is detected, so CI's default pass runs the lean path."""
    assert compat._detect_stream_writer()
    assert compat._detect_url_parsers() is not None
    assert all(hasattr(p, "make_connection") for p in (compat.AsyncPool, compat.SyncPool))
    assert compat._takes_no_command_name(compat.AsyncPool)


@pytest.mark.parametrize(("value", "lean"), [("public", "False"), ("auto", "True")])
def test_the_environment_variable_forces_the_public_api(value: str, lean: str) -> None:
    code = "from conveyor import compat as c; print(c.MODE, c.USE_STREAM_WRITER, c.LEAN)"
    env = {**os.environ, defaults.REDIS_COMPAT_ENV: value}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == [value, lean, lean]


def test_an_unknown_mode_is_one_clear_error() -> None:
    env = {**os.environ, defaults.REDIS_COMPAT_ENV: "fast"}
    done = subprocess.run(
        [sys.executable, "-c", "import conveyor"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "CONVEYOR_REDIS_COMPAT must be one of auto, public, not 'fast'" in done.stderr


async def test_a_script_call_round_trip_on_an_own_connection(mode: str, url: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        sha = await client.script_load(ECHO)
        pool = client.connection_pool
        conn = await compat.async_open(pool)
        # Plain arguments are packed by hand on the lean path; a float needs the encoder.
        for args, expected in [
            ((b"a", "b", 7, -1), [b"a", b"b", b"7", b"-1", 2]),
            (("é", 1.5, b"", 0), ["é".encode(), b"1.5", b"", b"0", 2]),
        ]:
            packed = compat.pack_script(conn, sha, ["k1", "k2"], args)
            by_redis_py = conn.pack_command("EVALSHA", sha, 2, "k1", "k2", *args)
            assert b"".join(packed) == b"".join(by_redis_py)
            await compat.async_send(conn, packed)
            assert await conn.read_response() == expected
        in_use = len(pool._in_use_connections)
        assert in_use == (1 if mode == "public" else 0)  # public: checked out of the pool
        await compat.async_release(pool, conn)
        assert len(pool._in_use_connections) == 0
        assert not conn.is_connected
    finally:
        await client.aclose()


def test_a_script_call_round_trip_on_an_own_blocking_connection(mode: str, url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        sha = client.script_load(ECHO)
        pool = client.connection_pool
        conn = compat.sync_open(pool)
        compat.sync_send(conn, compat.pack_script(conn, sha, ["k"], ("x", 2, b"y", 2.5)))
        assert conn.read_response() == [b"x", b"2", b"y", b"2.5", 1]
        compat.sync_release(pool, conn)
        assert len(pool._in_use_connections) == 0
    finally:
        client.close()


async def test_a_read_that_waits_too_long_is_cut(mode: str, url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, socket_timeout=30)
    try:
        conn = await compat.async_open(client.connection_pool)
        timeout = compat.take_read_timeout(conn)
        if mode == "internal":  # the caller keeps the timeout, with a watchdog
            assert (timeout, conn.socket_timeout) == (30, None)
        else:  # redis-py keeps it, per read
            assert (timeout, conn.socket_timeout) == (None, 30)
        await compat.async_send(conn, conn.pack_command("BLPOP", "conveyor-test:nothing", 0))
        reading = asyncio.create_task(conn.read_response())
        await asyncio.sleep(0)  # let the read start waiting
        compat.abort(conn)
        with pytest.raises((redis.ConnectionError, OSError)):
            await asyncio.wait_for(reading, 10)
        await compat.async_release(client.connection_pool, conn)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("name", "value", "typed"),
    [("socket_timeout", "4", 4.0), ("db", "3", 3), ("health_check_interval", "2", 2),
     ("client_name", "me", "me"), ("ssl_check_hostname", "false", False)],
)  # fmt: skip
def test_url_options_are_typed_as_redis_py_types_them(
    mode: str, name: str, value: str, typed: object
) -> None:
    assert compat.url_option(name, value) == typed


def test_an_unreadable_url_option_is_a_value_error(mode: str) -> None:
    with pytest.raises(ValueError):
        compat.url_option("socket_timeout", "soon")
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        connection.parse_url("redis+cluster://h:1?socket_timeout=soon")


def test_tls_is_told_by_the_connection_class() -> None:
    assert compat.is_tls(redis.ConnectionPool.from_url("rediss://h:1"))
    assert compat.is_tls(redis.asyncio.ConnectionPool.from_url("rediss://h:1"))
    assert not compat.is_tls(redis.ConnectionPool.from_url("redis://h:1"))
    sentinel = connection.async_client("rediss+sentinel://127.0.0.1:1/svc")
    assert compat.is_tls(sentinel.connection_pool)  # type: ignore[union-attr]


async def test_where_a_sentinel_client_comes_from(mode: str) -> None:
    client = connection.async_client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/2")
    origin = compat.sentinel_origin(client.connection_pool)  # type: ignore[union-attr]
    assert origin is not None
    assert (origin.nodes, origin.service) == ((("127.0.0.1", 1), ("127.0.0.1", 2)), "svc")
    assert len(origin.clients) == 2
    assert connection.client_url(client) == "redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/2"
    await connection.aclose(client)
    assert compat.sentinel_origin(redis.ConnectionPool.from_url("redis://h:1")) is None
    made_elsewhere = redis.asyncio.Sentinel([("127.0.0.1", 3)]).master_for("other")
    if mode == "internal":
        origin = compat.sentinel_origin(made_elsewhere.connection_pool)
        assert origin is not None and origin.service == "other"
    else:
        with pytest.raises(ConfigurationError, match="Sentinel URL"):
            compat.sentinel_origin(made_elsewhere.connection_pool)
    await made_elsewhere.aclose()


async def test_where_a_cluster_client_points(mode: str) -> None:
    client = connection.async_client("redis+cluster://:pw@127.0.0.1:1,127.0.0.1:2")
    options, nodes = compat.cluster_origin(client)
    assert nodes == [("127.0.0.1", 1), ("127.0.0.1", 2)]  # its seeds, until it connects
    assert options["password"] == "pw"
    assert connection.client_url(client) == "redis+cluster://:pw@127.0.0.1:1,127.0.0.1:2"
    await client.aclose()


async def test_where_a_cluster_client_made_elsewhere_points(mode: str) -> None:
    seeds = [redis.asyncio.cluster.ClusterNode("127.0.0.1", 1)]
    client = redis.asyncio.RedisCluster(startup_nodes=seeds)
    assert compat.cluster_origin(client)[1] == [("127.0.0.1", 1)]
    assert connection.client_url(client) == "redis+cluster://127.0.0.1:1"
    await client.aclose()


def test_a_cluster_client_with_no_known_node_is_refused_on_the_public_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unconnected:
        """What the public API shows of a cluster client that never connected."""

        def get_nodes(self) -> list[object]:
            return []

        def get_connection_kwargs(self) -> dict[str, object]:
            return {}

    monkeypatch.setattr(compat, "LEAN", False)
    with pytest.raises(ConfigurationError, match="initialize"):
        compat.cluster_origin(Unconnected())


async def test_a_pooled_connection_keeps_its_read_timeout(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without make_connection the connection comes from the pool and goes back to it."""
    monkeypatch.setattr(compat, "USE_MAKE_CONNECTION", False)
    client = redis.asyncio.Redis.from_url(url, socket_timeout=30)
    try:
        conn = await compat.async_open(client.connection_pool)
        assert (compat.take_read_timeout(conn), conn.socket_timeout) == (None, 30)
        await compat.async_release(client.connection_pool, conn)
    finally:
        await client.aclose()
