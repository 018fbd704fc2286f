"""The providers an agent may name. Keys are read from the environment at call time
and are never stored, logged or returned; base URLs come from the environment too,
so an agent's configuration cannot point a key at a host of its choosing."""

import os
import re
from dataclasses import dataclass

from django.conf import settings

from agents.providers.base import Provider, ProviderError


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str  # "openai" (the OpenAI SDK), "anthropic" (the Anthropic SDK) or "offline"
    key_env: str = ""  # the variable holding the API key
    url_env: str = ""  # the variable that may override the base URL
    default_url: str | None = None
    key_required: bool = True
    model_pattern: str = r".+"  # what a model name for this provider looks like
    # The neutral parameters its API accepts (None: all of them).
    parameters: frozenset[str] | None = None

    def base_url(self) -> str | None:
        return (os.environ.get(self.url_env) if self.url_env else None) or self.default_url

    def api_key(self) -> str:
        return os.environ.get(self.key_env, "") if self.key_env else ""

    @property
    def configured(self) -> bool:
        if self.kind == "offline":
            return True
        if self.key_required:
            return bool(self.api_key())
        return bool(self.base_url())


ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint
    for endpoint in [
        Endpoint("offline", "offline", key_required=False, model_pattern=r"offline-[\w.-]+"),
        # Explicit default URLs: given None, the SDKs would read their own variables, and an
        # empty OPENAI_BASE_URL (as compose passes when unset) would become the base URL.
        Endpoint(
            "openai",
            "openai",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "https://api.openai.com/v1",
            model_pattern=r"(gpt-|o\d|chatgpt-|ft:)[\w.:-]*",
        ),
        Endpoint(
            "anthropic",
            "anthropic",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "https://api.anthropic.com",
            model_pattern=r"claude-[\w.-]+",
            # The Messages API (SDK 2.x) has no temperature, top_p or penalties.
            parameters=frozenset({"max_tokens", "stop"}),
        ),
        Endpoint(
            "groq", "openai", "GROQ_API_KEY", "GROQ_BASE_URL", "https://api.groq.com/openai/v1"
        ),
        Endpoint(
            "openrouter",
            "openai",
            "OPENROUTER_API_KEY",
            "OPENROUTER_BASE_URL",
            "https://openrouter.ai/api/v1",
        ),
        Endpoint(
            "ollama",
            "openai",
            "OLLAMA_API_KEY",
            "OLLAMA_BASE_URL",
            "http://127.0.0.1:11434/v1",
            key_required=False,
        ),
        Endpoint("vllm", "openai", "VLLM_API_KEY", "VLLM_BASE_URL", key_required=False),
    ]
}


def default_provider() -> str:
    """The first provider with a key in the environment, else offline."""
    for name in ("openai", "anthropic"):
        if ENDPOINTS[name].configured:
            return name
    return "offline"


def model_error(provider: str, model: str) -> str | None:
    """Why `model` is not a model of `provider`, or None if it looks like one."""
    endpoint = ENDPOINTS.get(provider)
    if endpoint is None:
        return f"unknown provider {provider!r}; known: {', '.join(ENDPOINTS)}"
    if not re.fullmatch(endpoint.model_pattern, model or ""):
        return f"{model!r} is not a {provider} model"
    return None


def parameter_error(provider: str, parameters: object) -> str | None:
    """Why `parameters` cannot go to `provider`, or None."""
    endpoint = ENDPOINTS.get(provider)
    if endpoint is None or endpoint.parameters is None or not isinstance(parameters, dict):
        return None
    refused = sorted(set(parameters) - endpoint.parameters)
    if refused:
        return (
            f"{provider} does not accept {', '.join(refused)}; it accepts "
            f"{', '.join(sorted(endpoint.parameters))}"
        )
    return None


def get_provider(name: str) -> Provider:
    """A ready client for `name`; ProviderError (not retryable) if it cannot be used."""
    endpoint = ENDPOINTS.get(name)
    if endpoint is None:
        raise ProviderError(f"unknown provider {name!r}", retryable=False)
    if not endpoint.configured:
        missing = endpoint.key_env if endpoint.key_required else endpoint.url_env
        raise ProviderError(
            f"provider {name!r} is not configured: set {missing} in the environment of the workers",
            retryable=False,
        )
    timeout = settings.COUNTERSIGN_LLM_TIMEOUT_SECONDS
    if endpoint.kind == "openai":
        from agents.providers.openai import OpenAIProvider

        return OpenAIProvider(
            name=name,
            api_key=endpoint.api_key() or "not-needed",
            base_url=endpoint.base_url(),
            timeout=timeout,
            key_env=endpoint.key_env,
        )
    if endpoint.kind == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            name=name,
            api_key=endpoint.api_key(),
            base_url=endpoint.base_url(),
            timeout=timeout,
            key_env=endpoint.key_env,
        )
    from agents.providers.offline import OfflineProvider

    return OfflineProvider()
