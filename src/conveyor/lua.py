"""Loads the Lua scripts beside this module and binds their declared KEYS and ARGV.

Each script starts with a header comment that declares, by name, the keys and arguments
it takes (``KEYS: meta waiting``; ``ARGV: #count worker_id ...jobs*2``). The loader
generates ``local meta_key = KEYS[1]`` and friends from that header, so the contract and
the body cannot drift, and checks every key name against :mod:`conveyor.keys`. A ``#``
marks a numeric argument (bound with ``tonumber``); ``...name`` binds the index where the
variadic rest starts (``name_start``), and ``...name*N`` says that rest comes in items of
N values each. ``-- @include NAME`` pastes ``include/NAME.lua`` once. ``@states`` among the
KEYS stands for the key of every job state (see :mod:`conveyor.states`), and
``@idle_states`` for those of every state but the ones workers hold (``active``); either
binds ``job_states`` and ``job_state`` too: a script that must handle every state says so.

Python callers pass the ARGV by name (see :meth:`Script.arguments`): the values are put in
the declared order, and a missing, unknown or misshapen argument raises ``TypeError`` when
the call is built, so a call site that disagrees with its script fails its first test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from operator import itemgetter
from typing import Any

from conveyor import states
from conveyor.keys import QUEUE_KEYS, QueueKeys

_HEADER_LINE = re.compile(r"^(KEYS|ARGV):(.*)$", re.MULTILINE)
_INCLUDE = re.compile(r"^-- @include (\w+)\s*$", re.MULTILINE)
#: In a KEYS header: the keys of job states, in :data:`conveyor.states.STATES` order: of
#: every state, or of those whose jobs no worker holds (a producer may write those).
STATE_GROUPS = {
    "@states": states.STATES,
    "@idle_states": tuple(info for info in states.STATES if not info.held),
}
_TAIL = re.compile(r"^\.\.\.(\w+)(?:\*([1-9][0-9]*))?$")
_NAME = re.compile(r"^#?\w+$")


@dataclass(frozen=True)
class Script:
    """One Lua script: its source with generated bindings, its SHA1, its key and ARGV names.

    ``arg_names`` lists the ARGV names in order (``#`` dropped); a variadic rest is the last,
    spelled ``...name``. ``fixed`` are the names before it, ``tail`` its name (or ``None``)
    and ``stride`` the number of values in each of its items.
    """

    name: str
    source: str
    sha: str
    key_names: tuple[str, ...]
    arg_names: tuple[str, ...]
    fixed: tuple[str, ...]
    tail: str | None
    stride: int
    _pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Made once per script: calls on the hot paths (fetch, complete, fail) pick their
        # values in C rather than looking each name up in Python.
        if len(self.fixed) > 1:
            pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = itemgetter(*self.fixed)
        elif self.fixed:
            only = self.fixed[0]

            def pick(argv: Mapping[str, Any]) -> tuple[Any, ...]:
                return (argv[only],)
        else:

            def pick(argv: Mapping[str, Any]) -> tuple[Any, ...]:
                return ()

        object.__setattr__(self, "_pick", pick)

    def keys_for(self, keys: QueueKeys) -> list[str]:
        """The KEYS list this script expects, for one queue."""
        return [keys.key(name) for name in self.key_names]

    def arguments(self, argv: Mapping[str, Any]) -> Sequence[Any]:
        """The ARGV list, from values given by name: every declared name exactly once.

        The variadic rest is given by its name too, as a sequence of values, or of tuples of
        ``stride`` values each (flattened here). Anything else raises ``TypeError``.
        """
        tail = self.tail
        try:
            values = self._pick(argv)
            if tail is None:
                if len(argv) == len(values):
                    return values
                raise KeyError
            items = argv[tail]
        except KeyError:
            raise self._mismatch(argv) from None
        if len(argv) != len(values) + 1:
            raise self._mismatch(argv)
        if isinstance(items, (str, bytes)):
            raise TypeError(f"{self.name}.lua: {tail} must be a sequence, not {items!r}")
        args = list(values)
        try:
            if self.stride == 1:
                args += items
                return args
            for item in items:
                if (type(item) is not tuple and type(item) is not list) or len(item) != self.stride:
                    raise ValueError(item)
                args += item
        except (TypeError, ValueError):
            raise TypeError(
                f"{self.name}.lua: {tail} must be a sequence of "
                + ("values" if self.stride == 1 else f"tuples of {self.stride} values each")
                + f", not {items!r}"
            ) from None
        return args

    def _mismatch(self, argv: Mapping[str, Any]) -> TypeError:
        declared = [*self.fixed, *([self.tail] if self.tail else [])]
        missing = [name for name in declared if name not in argv]
        unknown = [name for name in argv if name not in declared]
        return TypeError(
            f"{self.name}.lua takes ARGV {' '.join(declared) or '(none)'}; "
            f"missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )


def _split_args(name: str, arg_names: list[str]) -> tuple[tuple[str, ...], str | None, int]:
    """The fixed names, the variadic rest's name and its stride, of declared ARGV names."""
    fixed: list[str] = []
    for index, arg in enumerate(arg_names):
        if arg.startswith("..."):
            if index != len(arg_names) - 1:
                raise ValueError(f"{name}.lua: the variadic {arg} must be the last ARGV")
            match = _TAIL.match(arg)
            if match is None:
                raise ValueError(f"{name}.lua: bad variadic ARGV {arg!r} (...name or ...name*N)")
            return tuple(fixed), match.group(1), int(match.group(2) or 1)
        if not _NAME.match(arg) or arg.lstrip("#") in fixed:
            raise ValueError(f"{name}.lua: bad or repeated ARGV name {arg!r}")
        fixed.append(arg.lstrip("#"))
    return tuple(fixed), None, 1


def _declared(header: str, field: str) -> list[str]:
    for match in _HEADER_LINE.finditer(header):
        if match.group(1) == field:
            return match.group(2).split()
    return []


def _expand_keys(name: str, declared: list[str]) -> list[str]:
    """The declared key names, a group of states (``@states``) replaced by its keys."""
    key_names: list[str] = []
    for key in declared:
        chosen = STATE_GROUPS.get(key)
        key_names += [info.key for info in chosen] if chosen else [key]
    doubled = sorted({key for key in key_names if key_names.count(key) > 1})
    if doubled:
        raise ValueError(f"{name}.lua declares {', '.join(doubled)} more than once in KEYS")
    return key_names


def _bindings(
    name: str, key_names: list[str], arg_names: list[str], chosen: tuple[states.StateInfo, ...]
) -> str:
    lines = []
    for index, key in enumerate(key_names, start=1):
        if key not in QUEUE_KEYS:
            raise ValueError(f"{name}.lua declares unknown key {key!r}")
        lines.append(f"local {key}_key = KEYS[{index}]")
    for index, arg in enumerate(arg_names, start=1):
        if arg.startswith("..."):
            lines.append(f"local {arg[3:].partition('*')[0]}_start = {index}")
        elif arg.startswith("#"):
            lines.append(f"local {arg[1:]} = tonumber(ARGV[{index}])")
        else:
            lines.append(f"local {arg} = ARGV[{index}]")
    if chosen:
        lines.append(states.lua_table(chosen))
    return "\n".join(lines)


def _read(relative: str) -> str:
    return (resources.files("conveyor") / "lua" / relative).read_text(encoding="utf-8")


def _expand_includes(source: str, seen: set[str] | None = None) -> str:
    """Paste each included helper once, however many includes ask for it."""
    seen = set() if seen is None else seen

    def include(match: re.Match[str]) -> str:
        helper = match.group(1)
        if helper in seen:
            return ""
        seen.add(helper)
        return _expand_includes(_read(f"include/{helper}.lua"), seen)

    return _INCLUDE.sub(include, source)


def build_script(name: str) -> Script:
    """Read ``lua/NAME.lua`` and return it with its bindings and includes in place."""
    raw = _read(f"{name}.lua")
    header_end = raw.find("]]")
    if not raw.startswith("--[[") or header_end < 0:
        raise ValueError(f"{name}.lua must start with a --[[ ... ]] header")
    header = raw[: header_end + 2]
    declared = _declared(header, "KEYS")
    key_names = _expand_keys(name, declared)
    arg_names = _declared(header, "ARGV")
    body = _expand_includes(raw[header_end + 2 :])
    groups = [STATE_GROUPS[key] for key in declared if key in STATE_GROUPS]
    if len(groups) > 1:
        raise ValueError(f"{name}.lua declares more than one group of states in KEYS")
    bindings = _bindings(name, key_names, arg_names, groups[0] if groups else ())
    source = f"{header}\n{bindings}\n{body}"
    sha = hashlib.sha1(source.encode()).hexdigest()
    fixed, tail, stride = _split_args(name, arg_names)
    names = (*fixed, *([f"...{tail}"] if tail else []))
    return Script(name, source, sha, tuple(key_names), names, fixed, tail, stride)


@cache
def script(name: str) -> Script:
    """The script named ``name`` (read once per process)."""
    return build_script(name)


def all_script_names() -> list[str]:
    """Every script shipped in the package."""
    folder = resources.files("conveyor") / "lua"
    return sorted(entry.name[:-4] for entry in folder.iterdir() if entry.name.endswith(".lua"))
