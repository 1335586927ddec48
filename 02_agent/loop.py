"""The agent loop: an HTTP client of any OpenAI-compatible chat server that runs tools.

One user turn = several model calls. Each call streams the model's thought
(`delta.reasoning_content`) and answer (`delta.content`); when the call ends with
`finish_reason: "tool_calls"` we run the tool, append the assistant message and the tool
message to the conversation and call the model again, until it answers or a step limit hits.

The protocol logic lives in `_Turn`, a small state machine that is fed SSE lines and returns
events. It does no I/O, so the sync `Agent.run` (httpx.Client) and the async `Agent.arun`
(httpx.AsyncClient, used by the web app) are the same few lines of plumbing around it.

Events are plain dicts:
    {"type": "thought", "delta": str}
    {"type": "action", "delta": "calc(1 + 2)", "tool": "calc", "argument": "1 + 2"}
    {"type": "observation", "delta": str}
    {"type": "answer", "delta": str}
    {"type": "done", "messages": [... the full updated conversation ...], "finish_reason": str}
    {"type": "error", "message": str}
    {"type": "restart"}  the answer so far is void: the step is asked again (below)
When the server answers that the conversation does not fit its context window (400,
`context_length_exceeded`), the turn leaves the oldest exchange out of its requests and asks again,
until only the current one is left; the returned history keeps everything. An answer cut off by the
window (`finish_reason: "length"`) while older exchanges are still in the request is asked again the
same way, after a `restart` event: a client drops what it showed of the model's step since the last
observation.
Requests carry past turns as their question and final answer (transformer.chat.past_turns_as_answers,
as the web page keeps them and the traces are written); the current turn carries all of its steps.
`done` or `error` is always the last event; no exception escapes `run`/`arun`. Closing the
generator early closes the HTTP stream, which is how the server learns to stop generating.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator, Iterator

import httpx

from agent.tools import relations, run_tool
from transformer.chat import past_turns_as_answers

Event = dict[str, Any]
DEFAULT_MODEL_URL = "http://127.0.0.1:9000/v1"

# Every tool takes one string; it travels in tool_calls.arguments as JSON under this key.
_TOOL_SPECS = {
    "calc": ("expression", "Evaluate an arithmetic expression (+ - * / // % **, parentheses)."),
    "lookup": ("query", "Look up a fact in the knowledge base, e.g. 'capital of France'."),
}
ARG_KEYS = {name: key for name, (key, _) in _TOOL_SPECS.items()}
MAX_RELATIONS = 500  # relations named in the lookup tool's description, at most


def tool_schemas() -> list[dict]:
    """OpenAI function schemas, sent as `tools` so any compatible server knows them. lookup's
    description names the relations of the knowledge base as it is now (03_model lets an action use
    the words of the conversation and of its tools: copying.py)."""
    docs = dict((name, doc) for name, (_, doc) in _TOOL_SPECS.items())
    known = relations()
    if known:
        docs["lookup"] += " It knows: " + ", ".join(f"{r} of ..." for r in known[:MAX_RELATIONS])
    return [{"type": "function", "function": {"name": name, "description": docs[name], "parameters": {
        "type": "object", "properties": {key: {"type": "string"}}, "required": [key]}}}
        for name, (key, _) in _TOOL_SPECS.items()]


class AgentError(Exception):
    """Something the user should read: a protocol violation or an HTTP error from the server."""


def _tool_argument(name: str, raw: str) -> tuple[str | None, str]:
    """Pull the single string argument out of a tool call's JSON arguments.
    Returns (argument, "") or (None, error string for the model to observe)."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        return None, f"error: tool arguments are not valid JSON ({e.msg})"
    if isinstance(args, str):
        return args, ""
    key = ARG_KEYS.get(name)
    if isinstance(args, dict):
        if isinstance(args.get(key), str):
            return args[key], ""
        values = list(args.values())
        if len(values) == 1 and isinstance(values[0], str):  # another key name or an unknown tool
            return values[0], ""
    want = f'{{"{key}": "..."}}' if key else "one string argument"
    return None, f"error: {name} expects {want}, got {raw}"


def _run_tool_call(call: dict) -> tuple[Event, str]:
    """Run one tool call -> (action event, observation). Never raises: errors are observations."""
    name, raw = call["function"]["name"], call["function"]["arguments"]
    arg, observation = _tool_argument(name, raw)
    if arg is not None:
        try:
            observation = run_tool(name, arg)
        except Exception as e:  # a tool bug must not kill the conversation
            observation = f"error: {type(e).__name__}: {e}"
    shown = raw if arg is None else arg
    return {"type": "action", "delta": f"{name}({shown})", "tool": name,
            "argument": shown}, str(observation)


class _Turn:
    """One agent turn as a state machine: request() -> feed(line)* -> end_step() -> repeat."""

    def __init__(self, messages: list[dict], payload: dict, max_steps: int):
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and "role" in m for m in messages):
            raise AgentError("messages must be a non-empty list of {'role', 'content'} dicts")
        self.messages = [dict(m) for m in messages]  # never mutate the caller's list
        self.payload, self.max_steps = payload, max_steps
        self.steps, self.finished = 0, False
        self.skip = 0  # messages[:skip] (but system messages) are left out: the window was too small

    def request(self) -> dict | None:
        """The JSON body of the next model call, or None when the turn is over."""
        if self.finished:
            return None
        self.steps += 1
        self.reasoning, self.content, self.calls = [], [], {}
        self.finish_reason, self.stream_done, self.usage = None, False, None
        system = [m for m in self.messages[:self.skip] if m.get("role") == "system"]
        return {**self.payload, "messages": past_turns_as_answers(system + self.messages[self.skip:])}

    def shorten(self, status: int, body: bytes) -> bool:
        """The server said the conversation does not fit its context window: from now on, leave the
        oldest exchange out of the requests (the history this turn returns keeps it) -> True, so the
        caller asks again; False when only the current exchange is left."""
        return status == 400 and b"context_length_exceeded" in body and self._drop_oldest()

    def cut_by_window(self) -> bool:
        """Did the context window, not max_tokens, end this response? (finish "length" with fewer
        tokens than max_tokens, by the usage the server reports)"""
        if self.finish_reason != "length":
            return False
        budget = self.payload.get("max_tokens")
        return budget is None or (self.usage or {}).get("completion_tokens", budget) < budget

    def _drop_oldest(self) -> bool:
        users = [i for i, m in enumerate(self.messages) if i >= self.skip and m.get("role") == "user"]
        if len(users) < 2:
            return False
        self.skip, self.steps = users[1], self.steps - 1
        return True

    def feed(self, line: str) -> list[Event]:
        """Parse one SSE line of the model's stream into thought/answer events."""
        if not line or line.startswith((":", "event:", "id:", "retry:")):
            return []
        if not line.startswith("data:"):
            raise AgentError("malformed stream from the model server: expected 'data:' lines, "
                             f"got {line[:80]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            self.stream_done = True
            return []
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise AgentError(f"malformed stream from the model server: bad JSON {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise AgentError(f"malformed stream from the model server: {data[:80]!r}")
        if "error" in chunk:
            raise AgentError(f"model server error: {_error_text(chunk)}")
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise AgentError(f"malformed stream from the model server: no choices in {data[:80]!r}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if not choices:  # e.g. the usage-only chunk
            return []
        choice = choices[0]
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise AgentError(f"malformed stream from the model server: bad choice in {data[:80]!r}")
        events = []
        if delta.get("reasoning_content"):
            self.reasoning.append(delta["reasoning_content"])
            events.append({"type": "thought", "delta": delta["reasoning_content"]})
        if delta.get("content"):
            self.content.append(delta["content"])
            events.append({"type": "answer", "delta": delta["content"]})
        for tc in delta.get("tool_calls") or []:  # streamed piecewise, merged by index
            call = self.calls.setdefault(tc.get("index", 0), {
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = tc.get("id") or call["id"]
            fn = tc.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return events

    def end_step(self) -> list[Event]:
        """The model call's stream ended: run its tools, or finish the turn with `done`."""
        if self.finish_reason is None and not self.stream_done:
            raise AgentError("the model server closed the stream before the response finished")
        reasoning, content = "".join(self.reasoning) or None, "".join(self.content) or None
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        if not self.calls and self.cut_by_window() and self._drop_oldest():
            return [{"type": "restart"}]  # ask again with less history
        if not self.calls:  # an answer (finish_reason stop or length): the turn is over
            self.messages.append(message)
            self.finished = True
            return [{"type": "done", "messages": self.messages,
                     "finish_reason": self.finish_reason or "stop"}]
        calls = [self.calls[i] for i in sorted(self.calls)]
        for call in calls:
            call["id"] = call["id"] or f"call_{uuid.uuid4().hex[:12]}"
        if self.steps >= self.max_steps:
            self.finished = True
            return [{"type": "error", "message": f"step limit reached: the model still wanted a tool "
                     f"after {self.max_steps} steps, stopping without a final answer"}]
        message["tool_calls"] = calls
        self.messages.append(message)
        events = []
        for call in calls:
            action, observation = _run_tool_call(call)
            self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": observation})
            events += [action, {"type": "observation", "delta": observation}]
        return events


def _error_text(body: Any) -> str:
    """The message of an OpenAI error JSON ({"error": {"message": ...}}), or the raw body."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            return text.strip()[:300] or "(empty body)"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return str(err or body)[:300]


class Agent:
    """A tool-using chat agent on top of an OpenAI-compatible server at `base_url` (…/v1)."""

    def __init__(self, base_url: str = DEFAULT_MODEL_URL, model: str = "default",
                 api_key: str | None = None, max_steps: int = 5, tools: bool = True,
                 timeout: float | httpx.Timeout = httpx.Timeout(60.0, connect=5.0),
                 temperature: float = 0.0, max_tokens: int | None = None):
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.base_url, self.max_steps, self.timeout = base_url.rstrip("/"), max_steps, timeout
        self.url = self.base_url + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # usage tells whether a response that ended at "length" was cut by max_tokens or by the window
        self.payload: dict[str, Any] = {"model": model, "stream": True, "temperature": temperature,
                                        "stream_options": {"include_usage": True}}
        if max_tokens is not None:
            self.payload["max_tokens"] = max_tokens
        self.tools = tools

    def _payload(self) -> dict[str, Any]:
        """The request body's fixed fields; the tools are described anew for each turn (the KB may change)."""
        return {**self.payload, "tools": tool_schemas()} if self.tools else self.payload

    def _error(self, e: Exception) -> Event:
        if isinstance(e, AgentError):
            msg = str(e)
        elif isinstance(e, httpx.TimeoutException):
            msg = f"the model server at {self.base_url} timed out ({type(e).__name__})"
        elif isinstance(e, httpx.HTTPError):
            msg = f"cannot reach the model server at {self.base_url}: {type(e).__name__}: {e}"
        else:
            msg = f"agent error: {type(e).__name__}: {e}"
        return {"type": "error", "message": msg}

    def _status_error(self, status: int, body: bytes) -> AgentError:
        return AgentError(f"model server returned HTTP {status}: {_error_text(body)}")

    def run(self, messages: list[dict]) -> Iterator[Event]:
        """Run one turn synchronously, yielding events as they stream."""
        try:
            turn = _Turn(messages, self._payload(), self.max_steps)
            with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
                while (body := turn.request()) is not None:
                    with client.stream("POST", self.url, json=body) as r:
                        if r.status_code >= 400:
                            if turn.shorten(r.status_code, error := r.read()):
                                continue
                            raise self._status_error(r.status_code, error)
                        for line in r.iter_lines():
                            yield from turn.feed(line)
                    yield from turn.end_step()
        except Exception as e:  # GeneratorExit (the caller closed us) is not an Exception
            yield self._error(e)

    async def arun(self, messages: list[dict]) -> AsyncIterator[Event]:
        """Async twin of `run` (same events), for the web app."""
        try:
            turn = _Turn(messages, self._payload(), self.max_steps)
            async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client:
                while (body := turn.request()) is not None:
                    async with client.stream("POST", self.url, json=body) as r:
                        if r.status_code >= 400:
                            if turn.shorten(r.status_code, error := await r.aread()):
                                continue
                            raise self._status_error(r.status_code, error)
                        async for line in r.aiter_lines():
                            for event in turn.feed(line):
                                yield event
                    for event in turn.end_step():
                        yield event
        except Exception as e:
            yield self._error(e)
