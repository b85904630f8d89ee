"""OpenAI-compatible client shared by descriptions and evaluation: cache, retries, budget."""

from emit_iad.llm_api.budget import Budget, BudgetExceeded, DeadlineExceeded, Usage
from emit_iad.llm_api.cache import ReplyCache, request_key
from emit_iad.llm_api.client import (
    ChatClient,
    ClientConfig,
    Failure,
    InvalidReply,
    Job,
    LLMConfigError,
    Reply,
    is_refusal,
    parse_json_object,
)
from emit_iad.llm_api.images import image_data_url

__all__ = [
    "Budget",
    "BudgetExceeded",
    "ChatClient",
    "ClientConfig",
    "DeadlineExceeded",
    "Failure",
    "InvalidReply",
    "Job",
    "LLMConfigError",
    "Reply",
    "ReplyCache",
    "Usage",
    "image_data_url",
    "is_refusal",
    "parse_json_object",
    "request_key",
]  # fmt: skip
