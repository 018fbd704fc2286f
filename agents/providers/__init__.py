"""LLM providers behind one interface (base.Provider): openai (and OpenAI-compatible
servers), anthropic, and offline (deterministic, no network)."""
