"""Request bodies (pydantic) and OpenAI's error shape.

Types are strict: `"temperature": "0.5"` is a type error (400), not silently a number. Unknown fields
are ignored, like OpenAI does for fields it does not use (e.g. `user`, `logit_bias` is refused below
only where ignoring it would change the output). Range checks match OpenAI's documented ranges;
top_k is an extension (0 = off).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class APIError(Exception):
    """An error that becomes `{"error": {...}}` with an HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Base(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Base):
    include_usage: bool = False


class Sampling(_Base):
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # None = 1.0 (OpenAI's default)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)         # None = 1.0
    top_k: int | None = Field(default=None, ge=0)                     # None = 0 = off
    stop: str | list[str] | None = None
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops


class SamplingFields(Sampling):
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1

    @field_validator("n")
    @classmethod
    def _one(cls, v):
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v


class ToolFunction(_Base):
    name: str
    arguments: str | dict[str, Any]


class ToolCall(_Base):
    id: str | None = None
    type: Literal["function"] = "function"
    function: ToolFunction


class ContentPart(_Base):
    type: str
    text: str = ""


class Message(_Base):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def as_dict(self) -> dict:
        """The transformer.chat message dict (content parts joined, `developer` treated as system)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(p.text for p in content if p.type == "text")
        d: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.reasoning_content is not None:
            d["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            d["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d


class ChatRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None

    @model_validator(mode="after")
    def _budget(self):
        if self.max_tokens is None:  # the newer name; both are accepted
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _single(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("exactly one prompt per request is supported")
            v = v[0]
        return v

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v):
        if v:
            raise ValueError("echo is not supported")
        return v


class GenerateRequest(Sampling):
    """The raw teaching endpoint: text in, token texts out (always streamed)."""
    prompt: str
