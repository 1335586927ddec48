"""From engine events to OpenAI response objects: the chat protocol state machine and the JSON shapes.

The model writes one assistant turn in the DESIGN.md token protocol:

    <|thought|>I need to add.<|action|>calc(1234 + 5678)<|observation|>
    <|answer|>6912.<|end|>

`ChatAssembler` follows it token by token. The special tokens switch the channel: text after
<|thought|> streams as `reasoning_content`, text after <|answer|> as `content`, and text after
<|action|> is buffered until <|observation|> completes it; then it is parsed (`calc(1234 + 5678)`
-> name "calc", arguments '{"expression": "1234 + 5678"}') and sent as one `tool_calls` delta, and
the response ends with finish_reason "tool_calls". Text before any channel token counts as content.
An action that does not parse is sent as content (finish_reason "stop"); an action cut off by
max_tokens is dropped (finish_reason "length").
"""
from __future__ import annotations

import time
import uuid

from transformer.chat import parse_action, tool_arguments_json

# generation ends at these tokens in chat mode (the engine's stop_ids)
CHAT_STOP_TOKENS = ("<|end|>", "<|observation|>", "<|endoftext|>", "<|user|>", "<|assistant|>")


def new_id(prefix: str, sep: str = "-") -> str:
    return f"{prefix}{sep}{uuid.uuid4().hex[:24]}"


class ChatAssembler:
    def __init__(self, tok):
        S = tok.special_tokens
        self.channel_of = {S["<|thought|>"]: "reasoning_content", S["<|answer|>"]: "content",
                           S["<|action|>"]: "action"}
        self.observation = S["<|observation|>"]
        self.channel = "content"
        self.action = ""
        self.tool_call: dict | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []

    def feed(self, text: str, special: int | None) -> list[dict]:
        """One engine Token event -> the deltas to send (each a dict for choices[0].delta)."""
        deltas = []
        if text:
            if self.channel == "action":
                self.action += text
            else:
                deltas.append({self.channel: text})
                (self.content if self.channel == "content" else self.reasoning).append(text)
        if special in self.channel_of:
            self.channel = self.channel_of[special]
            self.action = ""
        elif special == self.observation and self.channel == "action":
            parsed = parse_action(self.action)
            if parsed is None:  # not name(argument): show what the model wrote
                deltas.append({"content": self.action})
                self.content.append(self.action)
            else:
                name, arg = parsed
                self.tool_call = {"index": 0, "id": new_id("call", "_"), "type": "function",
                                  "function": {"name": name, "arguments": tool_arguments_json(name, arg)}}
                deltas.append({"tool_calls": [self.tool_call]})
            self.channel, self.action = "done", ""
        return deltas

    def finish_reason(self, engine_reason: str) -> str:
        return "tool_calls" if self.tool_call is not None else engine_reason

    def message(self) -> dict:
        msg = {"role": "assistant", "content": "".join(self.content) if self.content else None}
        if self.reasoning:
            msg["reasoning_content"] = "".join(self.reasoning)
        if self.tool_call is not None:
            call = {k: v for k, v in self.tool_call.items() if k != "index"}
            msg["tool_calls"] = [call]
        return msg


def usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


class Shapes:
    """Builds the JSON objects of one response (one id, one created time)."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def _wrap(self, obj: str, choices: list[dict], **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def chunk(self, delta: dict | str, finish_reason: str | None = None) -> dict:
        if self.chat:
            return self._wrap("chat.completion.chunk",
                              [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])
        return self._wrap("text_completion",
                          [{"index": 0, "text": delta, "logprobs": None, "finish_reason": finish_reason}])

    def usage_chunk(self, done) -> dict:
        return self._wrap("chat.completion.chunk" if self.chat else "text_completion", [], usage=usage(done))

    def final(self, payload: dict | str, finish_reason: str, done) -> dict:
        if self.chat:
            choice = {"index": 0, "message": payload, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": payload, "logprobs": None, "finish_reason": finish_reason}
        return self._wrap(self.object, [choice], usage=usage(done))
