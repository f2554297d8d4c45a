"""``maxcore usage``: period parsing and the per-model sums."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from maxcore.builtin.usage_command import parse_since, summarise
from maxcore.types import AuditEntry

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 7 * 86400), ("24h", 86400), ("30m", 1800), ("90s", 90), ("2w", 14 * 86400), (" 1.5H ", 5400),
])
def test_durations_count_back_from_now(text: str, seconds: float) -> None:
    assert parse_since(text, now=NOW) == NOW - seconds


def test_dates_are_utc_unless_they_say_otherwise() -> None:
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-01T02:00:00+02:00") == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    with pytest.raises(click.BadParameter, match="expected a duration such as 7d"):
        parse_since("last week")


def test_sums_per_model_and_ignores_what_is_not_a_token_count() -> None:
    entries = [
        AuditEntry("llm_call", {"model": "gpt-4o-mini", "prompt_tokens": 400, "completion_tokens": 40}),
        AuditEntry("llm_call", {"model": "gpt-4o-mini", "prompt_tokens": 600, "completion_tokens": 60}),
        AuditEntry("llm_call", {"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 1}),
        # Older rows, other models' quirks: nothing here may crash or inflate the sums.
        AuditEntry("llm_call", {"model": None, "prompt_tokens": True, "completion_tokens": -5}),
        AuditEntry("llm_call", {}),
        AuditEntry("tool_called", {"model": "gpt-4o", "prompt_tokens": 999}),
    ]
    rows = {row.model: row for row in summarise(entries)}
    assert list(rows) == ["gpt-4o-mini", "gpt-4o", "unknown"]
    mini = rows["gpt-4o-mini"]
    assert (mini.calls, mini.prompt_tokens, mini.completion_tokens, mini.total_tokens) == (2, 1000, 100, 1100)
    assert rows["unknown"].calls == 2 and rows["unknown"].total_tokens == 0
    assert rows["gpt-4o"].as_dict() == {"model": "gpt-4o", "calls": 1, "prompt_tokens": 10,
                                        "completion_tokens": 1, "total_tokens": 11}
