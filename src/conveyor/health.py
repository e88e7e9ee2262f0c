"""Checks that a server will not lose jobs: eviction policy and persistence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.ops import Command, Op


@dataclass(frozen=True)
class ServerSafety:
    """What the server's settings mean for the jobs it holds."""

    maxmemory_policy: str | None  # None when CONFIG is not allowed (managed servers, ACLs)
    aof_enabled: bool | None
    version: str | None

    @property
    def may_evict(self) -> bool:
        """True when the server may delete jobs under memory pressure."""
        return self.maxmemory_policy is not None and self.maxmemory_policy != "noeviction"

    def problems(self) -> list[str]:
        """Human-readable warnings, most serious first."""
        out = []
        if self.may_evict:
            out.append(
                f"maxmemory-policy is {self.maxmemory_policy!r}: the server may evict jobs "
                "under memory pressure; set it to 'noeviction'"
            )
        if self.aof_enabled is False:
            out.append(
                "append-only persistence is off (snapshots at best): a crash loses every job "
                "written since the last snapshot; enable 'appendonly yes'"
            )
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info_fields(raw: Any) -> dict[str, str]:
    if isinstance(raw, Exception):
        return {}
    if isinstance(raw, dict):  # redis-py parses INFO and CONFIG GET replies
        return {_text(key): _text(value) for key, value in raw.items()}
    text = _text(raw)
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def server_safety() -> Op[ServerSafety]:
    """Read the eviction policy and persistence settings."""
    policy_reply, info_reply, server_reply = yield [
        Command(("CONFIG", "GET", "maxmemory-policy"), error_ok=True),
        Command(("INFO", "persistence"), error_ok=True),
        Command(("INFO", "server"), error_ok=True),
    ]
    if isinstance(policy_reply, list):
        policy_reply = dict(zip(policy_reply[::2], policy_reply[1::2], strict=False))
    policy = _info_fields(policy_reply).get("maxmemory-policy")
    persistence = _info_fields(info_reply)
    server = _info_fields(server_reply)
    aof = persistence.get("aof_enabled")
    return ServerSafety(
        maxmemory_policy=policy,
        aof_enabled=None if aof is None else aof in ("1", "True"),
        version=server.get("valkey_version") or server.get("redis_version"),
    )
