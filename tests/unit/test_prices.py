"""The default price table and its matcher: model names as agents report them, overrides, unpriced."""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from flows.aggregates import CumulativeState, finalize, merge, partials, span_points
from schemas.config import Price, RollupsConfig
from schemas.datasets import SPANS
from schemas.prices import PriceTable, default_prices, token_kind
from schemas.rollups import GENAI_COST, GENAI_TOKENS, GENAI_UNPRICED

DEFAULTS = PriceTable.with_defaults({})


def test_the_default_table_is_dated_sourced_and_covers_the_common_providers() -> None:
    table = default_prices()
    assert table.as_of >= date(2025, 1, 1)
    assert {"openai", "anthropic", "google", "mistral"} <= {s.split()[0] for s in table.sources}
    for model in ("gpt-4o", "claude-sonnet-4", "gemini-2.5-pro", "mistral-large", "llama-3.3-70b"):
        assert table.models[model].input > 0 and table.models[model].output > 0


@pytest.mark.parametrize(
    ("reported", "key"),
    [
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),  # Anthropic's dated ids
        ("anthropic/claude-sonnet-4-20250514", "claude-sonnet-4"),  # OpenClaw / OpenRouter provider prefix
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),  # longest key wins
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet"),  # Bedrock
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),  # Vertex
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4.1", "gpt-4.1"),
        ("models/gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("mistral-large-2411", "mistral-large"),
        ("mistral-large-latest", "mistral-large"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b"),
    ],
)
def test_reported_names_match_their_table_entry(reported: str, key: str) -> None:
    assert DEFAULTS.lookup(reported) == default_prices().models[key]


@pytest.mark.parametrize(
    "reported", ["gpt-4o-audio-preview", "claude-sonnet-4-6", "gpt-4-32k", "my-finetune", "", "llama3:8b"]
)
def test_names_that_are_not_a_priced_model_plus_a_version_stay_unpriced(reported: str) -> None:
    assert DEFAULTS.lookup(reported) is None
    assert DEFAULTS.usd_per_token(reported, "input") is None


def test_config_prices_override_and_extend_the_defaults() -> None:
    table = PriceTable.with_defaults(
        {"openai/gpt-4o": Price(input=1.0, output=2.0), "house-model": Price(input=0.5, output=0.5)}
    )
    assert table.usd_per_token("gpt-4o-2024-08-06", "output") == pytest.approx(2e-6)
    assert table.usd_per_token("house-model", "input") == pytest.approx(0.5e-6)
    assert table.usd_per_token("claude-sonnet-4", "input") == pytest.approx(3e-6)  # defaults stay


def test_cache_tokens_use_cache_prices_where_the_provider_has_them() -> None:
    assert [token_kind(t) for t in ("input", "output", "cache_read", "cache_creation", "cached_input")] == [
        "input", "output", "cache_read", "cache_write", "cache_read"
    ]  # fmt: skip
    assert DEFAULTS.usd_per_token("claude-sonnet-4", "cache_read") == pytest.approx(0.3e-6)
    assert DEFAULTS.usd_per_token("claude-sonnet-4", "cache_creation") == pytest.approx(3.75e-6)
    assert DEFAULTS.usd_per_token("gpt-4", "cache_read") == pytest.approx(30e-6)  # no cache price: input


def test_rate_is_vectorised_and_null_for_unpriced_rows() -> None:
    frame = pl.DataFrame(
        {"model": ["gpt-4o", "unknown", None, "gpt-4o"], "type": ["input", "output", "input", "output"]}
    )
    rates = frame.select(DEFAULTS.rate(pl.col("model"), pl.col("type"))).to_series().to_list()
    assert rates == pytest.approx([2.5e-6, None, None, 10e-6], nan_ok=True)


def test_negative_prices_are_config_errors() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RollupsConfig.model_validate({"prices": {"m": {"input": -1}}})


def span_rows(models: list[str]) -> pa.Table:
    rows: list[dict[str, Any]] = [
        {
            "service_name": "gw", "name": "chat", "status_code": "OK", "duration_ns": 1_000_000,
            "end_time": 1_800_000_000_000_000_000, "gen_ai_request_model": model,
            "gen_ai_usage_input_tokens": 1000, "gen_ai_usage_output_tokens": 100,
        }
        for model in models
    ]  # fmt: skip
    return pa.Table.from_pydict(
        {c: [r.get(c) for r in rows] for c in SPANS.schema.names}, schema=SPANS.schema
    )


def test_rollups_count_unpriced_tokens_apart_and_never_as_zero_dollars() -> None:
    points = span_points(span_rows(["anthropic/claude-sonnet-4-20250514", "house-model"]), DEFAULTS)
    deltas, _ = CumulativeState().to_deltas(points)
    rows = pl.from_arrow(finalize(merge(partials(deltas, 60_000_000_000, 6)), 60_000_000_000, "1m"))
    assert isinstance(rows, pl.DataFrame)
    model = pl.col("attributes").map.get("gen_ai.request.model")
    cost = rows.filter(pl.col("metric_name") == GENAI_COST)
    assert cost.select(model).to_series().unique().to_list() == ["anthropic/claude-sonnet-4-20250514"]
    assert cost["sum"].sum() == pytest.approx(1000 * 3e-6 + 100 * 15e-6)
    unpriced = rows.filter(pl.col("metric_name") == GENAI_UNPRICED)
    assert unpriced.select(model).to_series().unique().to_list() == ["house-model"]
    assert sorted(unpriced["sum"].to_list()) == [100.0, 1000.0]
    assert rows.filter(pl.col("metric_name") == GENAI_TOKENS)["sum"].sum() == 2 * 1100
