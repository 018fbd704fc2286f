"""Cost of a call from the price table (prices.json), in Decimal. A model the table
does not know costs None: unknown, which is not the same as free."""

import json
from decimal import Decimal
from functools import cache
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.json")
PER_TOKENS = Decimal(1_000_000)


@cache
def price_table() -> dict[str, dict[str, tuple[Decimal, Decimal]]]:
    raw = json.loads(PRICES_FILE.read_text())
    return {
        provider: {
            model: (Decimal(prices[0]), Decimal(prices[1])) for model, prices in models.items()
        }
        for provider, models in raw.items()
        if not provider.startswith("_")
    }


def cost(provider: str, model: str, tokens_in: int, tokens_out: int) -> Decimal | None:
    prices = price_table().get(provider, {}).get(model)
    if prices is None:
        return None
    price_in, price_out = prices
    return (price_in * tokens_in + price_out * tokens_out) / PER_TOKENS
