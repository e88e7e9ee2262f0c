"""Invoking a click command in tests, and reading its --json output."""

from __future__ import annotations

import json
from typing import Any

import click
from click.testing import CliRunner, Result

#: An address where no server listens.
UNREACHABLE = "redis://127.0.0.1:1"


def invoke(command: click.Command, *args: str, input: str | None = None) -> Result:
    """Run ``command`` with ``args`` as the CLI would."""
    return CliRunner().invoke(command, list(args), input=input)


def invoke_json(command: click.Command, *args: str) -> Any:
    """Run ``command`` with ``--json`` and return the parsed output (it must succeed)."""
    result = invoke(command, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
