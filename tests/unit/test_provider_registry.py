"""Which provider an agent gets, from the environment only."""

import pytest

from agents.providers.base import ProviderError
from agents.providers.registry import default_provider, get_provider, model_error


def test_an_empty_base_url_variable_falls_back_to_the_real_service(monkeypatch):
    # docker-compose passes unset variables through as empty strings.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")
    openai, anthropic = get_provider("openai"), get_provider("anthropic")
    assert str(openai._client.base_url) == "https://api.openai.com/v1/"  # type: ignore[attr-defined]
    assert str(anthropic._client.base_url) == "https://api.anthropic.com"  # type: ignore[attr-defined]


def test_without_keys_the_default_is_offline_and_keyed_providers_refuse(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert default_provider() == "offline"
    with pytest.raises(ProviderError, match="set GROQ_API_KEY") as refused:
        get_provider("groq")
    assert not refused.value.retryable
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert default_provider() == "anthropic"


def test_model_names_are_checked_per_provider():
    assert model_error("openai", "gpt-4o-mini") is None
    assert model_error("ollama", "llama3.2:3b") is None  # any name on a local server
    assert model_error("anthropic", "gpt-4o") == "'gpt-4o' is not a anthropic model"
    assert model_error("nope", "x").startswith("unknown provider 'nope'")
