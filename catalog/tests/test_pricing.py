"""Alias prices, litellm's bundled cost map, and exact call costs."""

import logging
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from catalog.models import ModelAlias
from catalog.pricing import (
    Prices,
    client_cost,
    cost_map_entry,
    load_cost_map,
    prices_for_alias,
    provider_cost,
)


def make_alias(provider="openai", provider_model="gpt-4o-mini", **prices):
    return ModelAlias(
        alias="chat-test", provider=provider, provider_model=provider_model, **prices
    )


def test_alias_prices_win_over_cost_map():
    alias = make_alias(
        input_price_per_million=Decimal("2.500000"),
        output_price_per_million=Decimal("10.000000"),
    )

    assert prices_for_alias(alias) == Prices(Decimal("2.5"), Decimal("10"), "alias")


def test_alias_prices_given_as_strings_become_decimals():
    alias = make_alias(
        input_price_per_million="0.150000", output_price_per_million="0.600000"
    )

    prices = prices_for_alias(alias)

    assert prices.input_per_million == Decimal("0.15")
    assert isinstance(prices.input_per_million, Decimal)
    assert prices.source == "alias"


def test_zero_alias_price_is_kept():
    alias = make_alias(
        input_price_per_million=Decimal("0"), output_price_per_million=Decimal("0")
    )

    assert prices_for_alias(alias) == Prices(Decimal(0), Decimal(0), "alias")


def test_cost_map_prices_are_exact_per_million():
    # The bundled file lists gpt-4o-mini at 1.5e-07 and 6e-07 USD per token.
    prices = prices_for_alias(make_alias())

    assert prices.input_per_million == Decimal("0.15")
    assert prices.output_per_million == Decimal("0.6")
    assert prices.source == "cost_map"


def test_partial_alias_price_mixed_with_cost_map():
    alias = make_alias(input_price_per_million=Decimal("1.25"))

    prices = prices_for_alias(alias)

    assert prices.input_per_million == Decimal("1.25")
    assert prices.output_per_million == Decimal("0.6")
    assert prices.source == "cost_map"


def test_cost_map_lookup_uses_provider_prefix():
    # Listed as "deepseek/deepseek-chat" at 2.8e-07 and 4.2e-07 USD per token.
    prices = prices_for_alias(make_alias("deepseek", "deepseek-chat"))

    assert prices.input_per_million == Decimal("0.28")
    assert prices.output_per_million == Decimal("0.42")


def test_cost_map_lookup_falls_back_to_bare_model():
    prefixed = cost_map_entry("anthropic", "claude-haiku-4-5")

    assert prefixed is load_cost_map()["claude-haiku-4-5"]


def test_openai_compatible_model_found_by_bare_name():
    prices = prices_for_alias(make_alias("openai_compatible", "gpt-4o-mini"))

    assert prices.input_per_million == Decimal("0.15")


def test_unknown_model_is_free_and_unknown(caplog):
    model = f"no-such-model-{uuid.uuid4().hex}"

    with caplog.at_level(logging.WARNING, logger="catalog.pricing"):
        first = prices_for_alias(make_alias("openai_compatible", model))
        second = prices_for_alias(make_alias("openai_compatible", model))

    assert first == Prices(Decimal(0), Decimal(0), "unknown")
    assert second == first
    warnings = [r for r in caplog.records if r.name == "catalog.pricing"]
    assert len(warnings) == 1
    assert model in warnings[0].getMessage()


def test_unknown_model_keeps_partial_alias_price():
    alias = make_alias(
        "openai_compatible",
        f"no-such-model-{uuid.uuid4().hex}",
        output_price_per_million=Decimal("3"),
    )

    assert prices_for_alias(alias) == Prices(Decimal(0), Decimal(3), "unknown")


PRICES = Prices(Decimal("0.15"), Decimal("0.6"), "alias")


@pytest.mark.parametrize(
    ("prompt_tokens", "completion_tokens", "expected"),
    [
        (1000, 500, Decimal("0.0004500000")),
        (0, 0, Decimal("0")),
        (1, 0, Decimal("0.0000001500")),
        (0, 1, Decimal("0.0000006000")),
        (1_000_000, 1_000_000, Decimal("0.7500000000")),
    ],
)
def test_provider_cost(prompt_tokens, completion_tokens, expected):
    cost = provider_cost(PRICES, prompt_tokens, completion_tokens)

    assert cost == expected
    assert cost.as_tuple().exponent == -10


def test_provider_cost_rounds_half_up():
    tiny = Prices(Decimal("0.00005"), Decimal("0.000001"), "alias")

    # 5e-11 USD rounds up to 1e-10; 1e-12 USD rounds down to 0.
    assert provider_cost(tiny, 1, 0) == Decimal("0.0000000001")
    assert provider_cost(tiny, 0, 1) == Decimal("0")


@pytest.mark.parametrize(
    ("markup_percent", "expected"),
    [
        (Decimal("0"), Decimal("0.0004500000")),
        (Decimal("50"), Decimal("0.0006750000")),
        (Decimal("12.5"), Decimal("0.0005062500")),
        (Decimal("100"), Decimal("0.0009000000")),
    ],
)
def test_client_cost_applies_markup(markup_percent, expected):
    assert client_cost(Decimal("0.00045"), markup_percent) == expected


def test_client_cost_of_zero_is_zero():
    assert client_cost(Decimal("0"), Decimal("50")) == Decimal("0")


def test_client_cost_rounds_half_up():
    assert client_cost(Decimal("0.0000000001"), Decimal("50")) == Decimal(
        "0.0000000002"
    )


def test_prices_do_not_import_litellm():
    script = (
        "import sys, django; django.setup()\n"
        "from catalog.models import ModelAlias\n"
        "from catalog.pricing import prices_for_alias\n"
        "alias = ModelAlias(provider='openai', provider_model='gpt-4o-mini')\n"
        "assert prices_for_alias(alias).source == 'cost_map'\n"
        "assert 'litellm' not in sys.modules\n"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "saasllm.settings"}

    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
