"""The URL forms Conveyor reads (pure: nothing connects)."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel

from conveyor import connection
from conveyor.errors import ConfigurationError, ServerUnavailable


def test_a_single_server_url_keeps_its_redis_options_and_drops_conveyors() -> None:
    target = connection.parse_url(
        "rediss://u:p@db.example:6380/2?ssl_cert_reqs=none&wait_for_server=7"
    )
    assert target.kind == "server"
    assert target.server_url == "rediss://u:p@db.example:6380/2?ssl_cert_reqs=none"
    assert target.wait_for_server == 7.0


def test_cluster_seed_nodes_credentials_and_tls() -> None:
    target = connection.parse_url(
        "rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
        "?ssl_ca_certs=/ca.pem&ssl_check_hostname=false&wait_for_server=2.5"
    )
    assert target.kind == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert target.options == {
        "username": "app", "password": "s@cret", "ssl": True, "ssl_ca_certs": "/ca.pem",
        "ssl_check_hostname": False,
    }  # fmt: skip
    assert target.wait_for_server == 2.5


def test_sentinel_service_database_and_sentinel_credentials() -> None:
    target = connection.parse_url(
        "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3?sentinel_password=spw&socket_timeout=4"
    )
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26380))
    assert target.service == "mymaster"
    assert target.options == {"username": None, "password": "pw", "db": 3, "socket_timeout": 4.0}
    assert target.sentinel_options == {"password": "spw", "socket_timeout": 4.0}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost", "unsupported URL scheme"),
        ("redis+cluster://localhost", "host:port"),
        ("redis+cluster://h:1/2", "database 0"),
        ("redis+sentinel://h:26379", "service"),
        ("redis+cluster://h:1?socket_timeout=soon", "socket_timeout"),
        ("redis://h?wait_for_server=-1", "negative"),
    ],
)
def test_unusable_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        connection.parse_url(url)


def test_passwords_are_hidden_in_every_form() -> None:
    assert connection.redact("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert connection.redact("redis+cluster://:secret@a:1,b:2") == "redis+cluster://:***@a:1,b:2"
    hidden = connection.redact("redis+sentinel://s:1/m?sentinel_password=secret&db=1")
    assert "secret" not in hidden and "db=1" in hidden


def test_each_form_makes_its_kind_of_client() -> None:
    cluster = connection.async_client("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert isinstance(cluster, redis.asyncio.RedisCluster)
    # A blocking cluster client reads the slot map as it is made: no seed node, no client.
    with pytest.raises(ServerUnavailable, match=r"127\.0\.0\.1:1"):
        connection.sync_client("redis+cluster://127.0.0.1:1")
    primary = connection.async_client("redis+sentinel://127.0.0.1:1/svc")
    pool = primary.connection_pool  # type: ignore[union-attr]
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert connection.client_url(primary) == "redis+sentinel://127.0.0.1:1/svc/0"
    single = connection.sync_client("redis://u:p@127.0.0.1:5/1")
    assert connection.client_url(single) == "redis://u:p@127.0.0.1:5/1"
    single.close()


def test_a_unix_socket_url_keeps_its_path() -> None:
    target = connection.parse_url("unix:///tmp/x/valkey.sock?db=1&wait_for_server=3")
    assert (target.server_url, target.wait_for_server) == ("unix:///tmp/x/valkey.sock?db=1", 3.0)
    assert connection.parse_url("unix:///tmp/v.sock").server_url == "unix:///tmp/v.sock"


def test_redacting_leaves_urls_without_passwords_alone() -> None:
    for url in ("unix:///tmp/v.sock", "redis://h:1/0?db=2", "redis+cluster://a:1,b:2"):
        assert connection.redact(url) == url
