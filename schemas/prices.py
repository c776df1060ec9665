"""Model prices: the dated default table (schemas/prices.yaml) under `rollups.prices`, matched on
model names as agents report them, so that cost works out of the box and an unknown model stays
unpriced instead of costing $0.

The table is data in the repo rather than a pricing package (genai-prices, LiteLLM's map) so that
its date and sources are visible, the config can override any entry, and a dependency upgrade
never changes past costs silently. No library normalises model names across providers, hence the
small matcher below: a name is lowercased, loses its provider prefix (`openai/`, `anthropic.`,
`us.anthropic.`, `models/`) and then matches a key exactly or as the key plus a version suffix
(`-20250514`, `-2024-08-06`, `@20240620`, `-v1:0`, `-latest`, `-preview-05-20`, `-instruct`).
Longest key wins, so `gpt-4o-mini-2024-07-18` is `gpt-4o-mini`, not `gpt-4o`; a name whose
remainder is not a version (`gpt-4o-audio-preview`, `claude-sonnet-4-6`) is unpriced.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

import polars as pl
import yaml

from schemas.config import Price
from schemas.types import Strict

DEFAULT_TABLE: Final = Path(__file__).with_name("prices.yaml")

# Bedrock model ids: an optional region (`us.`, `eu.`) and the vendor before the model name.
_VENDOR_PREFIX: Final = re.compile(
    r"^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|cohere|amazon|ai21|deepseek|openai|google|xai)\."
)
_VERSION_SUFFIX: Final = re.compile(
    r"(?:[-@:](?:\d{3,}|latest|v\d|preview|exp|instruct|turbo|versatile|instant|it\b)[\w.:@-]*)?"
)
_PER_TOKEN: Final = 1e-6  # prices are per million tokens


class PriceFile(Strict):
    """schemas/prices.yaml: when the prices were taken, from where, and the prices."""

    as_of: dt.date
    sources: dict[str, str]
    models: dict[str, Price]


@cache
def default_prices() -> PriceFile:
    return PriceFile.model_validate(yaml.safe_load(DEFAULT_TABLE.read_text()))


def model_key(name: str) -> str:
    """A reported model name without case and provider prefix: what table keys are compared with."""
    return _VENDOR_PREFIX.sub("", name.strip().lower().rsplit("/", 1)[-1])


def token_kind(token_type: str) -> str:
    """The price column of a token type: output, cache_read, cache_write, else input."""
    kind = token_type.lower()
    if kind == "output":
        return "output"
    if "cache_read" in kind or "cached" in kind:
        return "cache_read"
    if "cache_write" in kind or "cache_creation" in kind:
        return "cache_write"
    return "input"


class PriceTable:
    """Prices by model key; lookups are cached per distinct model name, never done per data point."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = {model_key(name): price for name, price in prices.items()}
        self._matches: dict[str, Price | None] = {}

    @classmethod
    def with_defaults(cls, overrides: Mapping[str, Price]) -> PriceTable:
        """The shipped table, each entry replaced or extended by the config's `rollups.prices`."""
        return cls({**default_prices().models, **{model_key(k): v for k, v in overrides.items()}})

    def lookup(self, model: str) -> Price | None:
        if model not in self._matches:
            self._matches[model] = self._match(model_key(model)) if model else None
        return self._matches[model]

    def _match(self, key: str) -> Price | None:
        if key in self._prices:
            return self._prices[key]
        found = [k for k in self._prices if key.startswith(k) and _VERSION_SUFFIX.fullmatch(key[len(k) :])]
        return self._prices[max(found, key=len)] if found else None

    def usd_per_token(self, model: str, token_type: str) -> float | None:
        """None when the model has no price: the caller shows it as unpriced, never as $0."""
        price = self.lookup(model)
        if price is None:
            return None
        rate = getattr(price, token_kind(token_type))
        return (price.input if rate is None else rate) * _PER_TOKEN

    def rate(self, model: pl.Expr, token_type: pl.Expr) -> pl.Expr:
        """USD per token of each row (null when unpriced), looked up once per distinct (model, type)."""

        def per_row(pairs: pl.Series) -> pl.Series:
            rows = pairs.struct.unnest().fill_null("")
            keys = rows.unique()
            usd = [self.usd_per_token(m, t) for m, t in keys.iter_rows()]
            priced = keys.with_columns(pl.Series("usd", usd, pl.Float64))
            return rows.join(priced, on=rows.columns, how="left", maintain_order="left")["usd"]

        pairs = pl.struct(model.alias("model"), token_type.alias("token_type"))
        return pairs.map_batches(per_row, return_dtype=pl.Float64)
