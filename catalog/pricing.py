"""Provider prices of model aliases and the cost of a call, in USD.

Prices are Decimal USD per million tokens. An alias's own price wins. A price
the alias leaves empty comes from the cost map bundled with the installed
litellm package, which is read as JSON without importing litellm and without
any network access.
"""

import functools
import importlib.util
import json
import logging
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from catalog.models import ModelAlias, Provider

logger = logging.getLogger(__name__)

COST_MAP_FILE = "model_prices_and_context_window_backup.json"
# Costs are kept to 10 decimal places: a single token of the cheapest models
# costs about 1e-8 USD, so coarser rounding would lose real money over calls.
COST_QUANTUM = Decimal("0.0000000001")
TOKENS_PER_MILLION = Decimal(1_000_000)

# Key prefixes of the cost map for each provider. OpenAI and Anthropic models
# and generic OpenAI-compatible ones are listed without a prefix, and every
# lookup falls back to the bare model name.
COST_MAP_PREFIXES = {
    Provider.OPENAI: "openai",
    Provider.AZURE: "azure",
    Provider.GROQ: "groq",
    Provider.TOGETHER: "together_ai",
    Provider.DEEPSEEK: "deepseek",
    Provider.MISTRAL: "mistral",
    Provider.FIREWORKS: "fireworks_ai",
    Provider.ANTHROPIC: "anthropic",
    Provider.GEMINI: "gemini",
    Provider.VERTEX_AI: "vertex_ai",
    Provider.BEDROCK: "bedrock",
    Provider.COHERE: "cohere",
}


@dataclass(frozen=True)
class Prices:
    """USD per million tokens and where the prices came from.

    ``source`` is "alias" when the alias sets both prices, "cost_map" when at
    least one comes from litellm's cost map, and "unknown" when the cost map
    has no entry for the model, so each price the alias leaves empty is zero.
    """

    input_per_million: Decimal
    output_per_million: Decimal
    source: str


def prices_for_alias(alias: ModelAlias) -> Prices:
    """Return the alias's prices, filling empty ones from the cost map."""
    input_price = _decimal_or_none(alias.input_price_per_million)
    output_price = _decimal_or_none(alias.output_price_per_million)
    if input_price is not None and output_price is not None:
        return Prices(input_price, output_price, "alias")

    entry = cost_map_entry(alias.provider, alias.provider_model)
    if entry is None:
        _warn_unknown_model(alias.provider, alias.provider_model)
        return Prices(input_price or Decimal(0), output_price or Decimal(0), "unknown")

    if input_price is None:
        input_price = _per_million(entry.get("input_cost_per_token"))
    if output_price is None:
        output_price = _per_million(entry.get("output_cost_per_token"))
    return Prices(input_price, output_price, "cost_map")


def provider_cost(
    prices: Prices, prompt_tokens: int, completion_tokens: int
) -> Decimal:
    """Return what the provider charges for the tokens, to 10 decimal places."""
    cost = (
        Decimal(prompt_tokens) * prices.input_per_million
        + Decimal(completion_tokens) * prices.output_per_million
    ) / TOKENS_PER_MILLION
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def client_cost(provider_cost: Decimal, markup_percent: Decimal) -> Decimal:
    """Return the provider cost plus a markup in percent, to 10 decimal places."""
    cost = provider_cost * (1 + Decimal(markup_percent) / 100)
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def cost_map_entry(provider: str, model: str) -> dict | None:
    """Return the cost map entry of a provider model, or None if it has none."""
    cost_map = load_cost_map()
    prefix = COST_MAP_PREFIXES.get(provider)
    keys = [f"{prefix}/{model}", model] if prefix else [model]
    for key in keys:
        entry = cost_map.get(key)
        if isinstance(entry, dict):
            return entry
    return None


@functools.cache
def load_cost_map() -> dict:
    """Read litellm's bundled cost map once per process; {} if it is missing."""
    spec = importlib.util.find_spec("litellm")
    locations = spec.submodule_search_locations if spec else None
    if not locations:
        logger.warning("litellm is not installed; model prices default to zero")
        return {}
    path = Path(next(iter(locations))) / COST_MAP_FILE
    try:
        with path.open(encoding="utf-8") as file:
            cost_map = json.load(file)
    except (OSError, ValueError) as exc:
        logger.warning("Cannot read litellm's cost map %s: %s", path, exc)
        return {}
    return cost_map if isinstance(cost_map, dict) else {}


def _decimal_or_none(value) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _per_million(cost_per_token) -> Decimal:
    """Convert the cost map's per-token float to an exact per-million Decimal."""
    if isinstance(cost_per_token, bool) or not isinstance(
        cost_per_token, int | float | str
    ):
        return Decimal(0)
    try:
        value = Decimal(str(cost_per_token))
    except InvalidOperation:
        return Decimal(0)
    if not value.is_finite() or value < 0:
        return Decimal(0)
    return value * TOKENS_PER_MILLION


_warned_models: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_unknown_model(provider: str, model: str) -> None:
    with _warned_lock:
        if (provider, model) in _warned_models:
            return
        _warned_models.add((provider, model))
    logger.warning(
        "No price for provider %s model %s in the alias or litellm's cost map; "
        "its calls cost 0 until the alias sets prices",
        provider,
        model,
    )
