"""A scripted fake OpenAI-compatible chat server for testing the agent loop and the web app.

    fake = FakeOpenAI([Reply(thought="I add.", tool="calc", args={"expression": "1+2"}),
                       Reply(answer="3.")], delay=0.0)
    with serve(fake.app) as url:          # url = "http://127.0.0.1:PORT"
        Agent(url + "/v1").run(...)
        fake.reset([Reply(answer="Hi!")])   # next script, same server
    fake.requests      # the JSON bodies it received, in order
    fake.disconnected  # threading.Event: a client went away mid-stream

Each POST /v1/chat/completions consumes the next Reply of the script and streams it token by
token (one word per chunk) as chat.completion.chunk SSE frames, like 03_model does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class Reply:
    thought: str = ""               # streamed as delta.reasoning_content
    answer: str = ""                # streamed as delta.content
    tool: str | None = None         # a tool call ends the reply with finish_reason "tool_calls"
    args: dict | None = None        # tool arguments (JSON-encoded) ...
    raw_args: str | None = None     # ... or this exact string (to test bad JSON)
    finish_reason: str = "stop"
    status: int = 200               # != 200: return an OpenAI error JSON instead of a stream
    code: str | None = None         # the error JSON's "code"
    raw_lines: list[str] = field(default_factory=list)  # sent verbatim (malformed stream tests)
    truncate: bool = False          # stop after the text without finish_reason or [DONE]
    completion_tokens: int = 0      # reported in a usage chunk when the request asks for one


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


class FakeOpenAI:
    def __init__(self, script: list[Reply] = (), delay: float = 0.0):
        self.reset(script, delay)
        self.app = self._make_app()

    def reset(self, script: list[Reply], delay: float = 0.0) -> "FakeOpenAI":
        """Start a new script (one server can serve many tests: starting uvicorn costs ~0.3 s)."""
        self.script, self.delay = list(script), delay
        self.requests: list[dict] = []
        self.disconnected = threading.Event()
        self.completed = 0  # streams that were sent to the end
        return self

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return f"data: {json.dumps(chunk)}\n\n"

    async def _stream(self, r: Reply, usage: bool = False):
        finished = False
        try:
            yield self._chunk({"role": "assistant"})
            for line in r.raw_lines:
                yield line + "\n\n"
            for key, text in (("reasoning_content", r.thought), ("content", r.answer)):
                for tok in _tokens(text):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    yield self._chunk({key: tok})
            if r.truncate:
                finished = True
                return
            if r.tool is not None:
                args = r.raw_args if r.raw_args is not None else json.dumps(r.args or {})
                yield self._chunk({"tool_calls": [{"index": 0, "id": f"call_{len(self.requests)}",
                                   "type": "function", "function": {"name": r.tool, "arguments": args}}]})
                yield self._chunk({}, "tool_calls")
            else:
                yield self._chunk({}, r.finish_reason)
            if usage:
                yield f"data: {json.dumps({'choices': [], 'usage': {'completion_tokens': r.completion_tokens}})}\n\n"
            yield "data: [DONE]\n\n"
            finished = True
            self.completed += 1
        finally:  # runs on cancellation too: that is how we see the client hang up
            if not finished:
                self.disconnected.set()

    def _make_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        def health():
            return {"status": "ok"}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self.requests.append(await request.json())
            if not self.script:
                return JSONResponse({"error": {"message": "fake script exhausted", "type": "server_error",
                                               "param": None, "code": None}}, status_code=500)
            reply = self.script.pop(0)
            if reply.status != 200:
                return JSONResponse({"error": {"message": f"scripted failure {reply.status}",
                                               "type": "server_error", "param": None, "code": reply.code}},
                                    status_code=reply.status)
            body = self.requests[-1]
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._stream(reply, usage), media_type="text/event-stream")

        return app


@contextlib.contextmanager
def serve(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
