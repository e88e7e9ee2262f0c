"""Connection quirks in one place: which server to use, how to reach it, how it fails.

With no URL (no argument, no ``CONVEYOR_URL``) Conveyor uses the embedded Valkey server.
Reaching a server is retried briefly with backoff; after that a single clear
:class:`~conveyor.ServerUnavailable` names the URL (with any password hidden).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from conveyor import defaults
from conveyor.errors import ServerUnavailable

#: Errors that mean the server could not be reached (as opposed to a refused command).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``CONVEYOR_URL``, else the embedded server's."""
    if url:
        return url
    from_env = os.environ.get(defaults.URL_ENV)
    if from_env:
        return from_env
    from conveyor.embedded import ensure_server  # started only when it is needed

    return ensure_server().url


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _client_kwargs() -> dict[str, Any]:
    return {
        "socket_connect_timeout": defaults.CONNECT_TIMEOUT,
        "socket_timeout": defaults.SOCKET_TIMEOUT,
        "health_check_interval": 30,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.1)


def async_client(url: str) -> redis.asyncio.Redis:
    """An asyncio client for ``url`` (no I/O happens until the first command)."""
    retry = AsyncRetry(_backoff(), defaults.CONNECT_RETRIES)
    return redis.asyncio.Redis.from_url(url, retry=retry, **_client_kwargs())


def sync_client(url: str) -> redis.Redis:
    """A blocking client for ``url`` (no I/O happens until the first command)."""
    retry = Retry(_backoff(), defaults.CONNECT_RETRIES)
    return redis.Redis.from_url(url, retry=retry, **_client_kwargs())


def client_url(client: redis.Redis | redis.asyncio.Redis) -> str:
    """A description of where an existing client points, for error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if kwargs.get("ssl") else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def unavailable(url: str, exc: BaseException) -> ServerUnavailable:
    """The error raised when ``url`` cannot be reached."""
    return ServerUnavailable(f"cannot reach the Redis/Valkey server at {redact(url)}: {exc}")
