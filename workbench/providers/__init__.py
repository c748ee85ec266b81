"""Model providers behind one protocol: local GGUF (llama-cpp-python) and hosted (LiteLLM).

Nothing here imports llama_cpp or litellm at import time; they load when a model is first used.
Providers run a `workbench.models.ModelSpec` (re-exported here for convenience).
"""

from workbench.models import ModelSpec
from workbench.providers.base import (
    ERROR_CODES,
    AuthError,
    ConnectionFailure,
    ContentPolicyError,
    ContextWindowError,
    OtherProviderError,
    Provider,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    Request,
    Response,
    UnknownModelError,
    get_provider,
    redact,
)

__all__ = [
    "ERROR_CODES", "AuthError", "ConnectionFailure", "ContentPolicyError", "ContextWindowError",
    "ModelSpec", "OtherProviderError", "Provider", "ProviderError", "ProviderTimeout",
    "RateLimitError", "Request", "Response", "UnknownModelError", "get_provider", "redact",
]
