"""Pure pieces of the dashboard, without a server: the chart, times and ages, filters."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from conveyor import defaults
from conveyor.dashboard import params, present
from conveyor.dashboard.chart import throughput_svg
from conveyor.metrics import MinuteStats


def test_throughput_chart_is_plain_svg() -> None:
    minutes = [MinuteStats(m, completed=m % 5, failed=int(m == 3), dead=0) for m in range(180)]
    svg = str(throughput_svg(minutes, "emails <&> throughput"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "4/min" in svg and "3h ago" in svg and "now" in svg
    assert "emails &lt;&amp;&gt; throughput" in svg and "<&>" not in svg
    assert 'aria-label="emails &lt;&amp;&gt; throughput: 360 completed"' in svg
    assert "style=" not in svg  # the content security policy forbids inline styles
    empty = str(throughput_svg([]))
    assert "1/min" in empty and "0m ago" in empty


def test_ages_times_and_filters() -> None:
    assert [present.age(s) for s in (None, 5, 61, 7200, 90000)] == ["—", "5s", "1m", "2h", "1d"]
    assert present.when(0) == "1970-01-01 00:00:00" and present.when(None) == ""
    assert present.parse_when("") is None
    assert abs((present.parse_when("2h") or 0) - (time.time() - 7200)) < 5
    assert present.parse_when("1970-01-01T00:01") == 60.0  # naive means UTC
    assert present.parse_when("1970-01-01T01:00+01:00") == 0.0
    with pytest.raises(ValueError, match="neither"):
        present.parse_when("soon")
    params = present.filter_params({"reason": "killed", "name": " ", "since": "1h", "x": "y"})
    assert params == {"reason": "killed", "since": "1h"}
    assert present.dead_filter(params).reason == "killed"
    with pytest.raises(ValueError):
        present.dead_filter({"reason": "bored"})
    assert present.pretty(b'{"a":[1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert present.pretty(b"not json") == "not json"


def test_a_partitioned_cursor_is_a_position_per_partition() -> None:
    from conveyor.dashboard.reads import format_positions, parse_positions

    assert parse_positions("", 3) == parse_positions("0", 3) == [0, 0, 0]
    assert parse_positions("12.-.7", 3) == [12, None, 7]
    assert format_positions([12, None, 7]) == "12.-.7" and format_positions([0, 0]) == 0
    for bad in ("1.2", "1.2.3.4", "a.b.c", "-1.0.0", "1..2", "1.2.3 "):
        with pytest.raises(ValueError):
            parse_positions(bad, 3)


def test_partitions_are_named_as_their_queue() -> None:
    from conveyor.dashboard.backend import as_logical

    partitioned = {"emails": 4}
    assert as_logical("emails~3", partitioned) == "emails"
    assert as_logical("emails", partitioned) == "emails"
    assert as_logical("emails~4", partitioned) == "emails~4"  # not one of its partitions
    assert as_logical("other~0", partitioned) == "other~0"  # a plain queue of that name
    assert present.partition("emails~3") == "3" and present.partition("emails") == ""


def _get(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(),
                    "headers": []})  # fmt: skip


def _refused(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(HTTPException) as caught:
        call(*args)
    assert caught.value.status_code == 400
    return caught.value.detail


def test_request_inputs_are_read_and_refused_in_one_place() -> None:
    assert params.limit_param(_get("")) == params.PAGE_SIZE
    assert params.limit_param(_get("limit=0")) == params.PAGE_SIZE
    assert params.limit_param(_get("limit=9999")) == params.MAX_PAGE_SIZE
    assert "limit must be >= 0" in _refused(params.limit_param, _get("limit=-1"))
    assert params.state_param(_get("state=dead")).value == "dead"
    assert "state must be one of" in _refused(params.state_param, _get("state=lost"))
    assert params.job_name_param(_get("name=+send+")) == "send"
    assert params.dead_filter({"reason": "killed", "name": " "}).reason == "killed"
    assert "bored" in _refused(params.dead_filter, {"reason": "bored"})
    assert params.body_ids({}) is None and params.body_ids({"ids": ["a"]}) == ["a"]
    assert "list of job ids" in _refused(params.body_ids, {"ids": "a"})
    too_many = {"ids": [str(i) for i in range(defaults.API_MAX_IDS + 1)]}
    assert "at most" in _refused(params.body_ids, too_many)
    assert params.flag({"dry_run": True}, "dry_run") and not params.flag({}, "all")
    assert '"all" must be true or false' in _refused(params.flag, {"all": "true"}, "all")
    assert params.edited_payload('{"a": 1}') == {"a": 1}
    assert "edited payload" in _refused(params.edited_payload, "{nope")
