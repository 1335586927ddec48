"""The web chat backend: serves one static page and streams agent events over SSE.

    python -m app.serve --model-url http://127.0.0.1:9000/v1 --port 8000

`POST /chat` takes `{"messages": [{"role": "user"|"assistant", "content": str}, ...]}` (the page
sends past assistant turns as their final answer text only) and answers with SSE frames
`data: {"type": "thought"|"action"|"observation"|"answer", "delta": ...}` (and `{"type": "restart"}`
when the context window cut a step off and the agent asks again: the page drops that step), then one
`done` or `error` frame. Each frame is sent the moment the agent yields it.

Cancellation: when the browser aborts the fetch (Stop button), Starlette notices the
disconnect and cancels the response; `_EventStream` then closes the agent generator, which
closes its HTTP stream to the model server, which stops generating for this request.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from agent.loop import DEFAULT_MODEL_URL, Agent

STATIC = Path(__file__).parent / "static"
MAX_MESSAGES, MAX_CHARS = 64, 8000


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_CHARS)


class ChatRequest(BaseModel):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)

    @field_validator("messages")
    @classmethod
    def ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user" or not messages[-1].content.strip():
            raise ValueError("the last message must be a non-empty user message")
        return messages


class _EventStream(StreamingResponse):
    """A StreamingResponse that always closes its generator, also when the client hangs up
    (Starlette cancels the send loop then, but does not close the generator itself)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def create_app(model_url: str = DEFAULT_MODEL_URL, kb_path: str | None = None, **agent_kw: Any) -> FastAPI:
    """The app; `agent_kw` go to `agent.loop.Agent` (model, max_steps, tools, ...)."""
    if kb_path is not None:
        os.environ["KB_PATH"] = str(kb_path)  # read by agent.tools.lookup at call time
    agent = Agent(model_url, **agent_kw)
    app = FastAPI(title="LLM stack chat", docs_url=None, redoc_url=None)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model_url": model_url}

    @app.post("/chat")
    async def chat(req: ChatRequest) -> StreamingResponse:
        messages = [m.model_dump() for m in req.messages]

        async def frames() -> AsyncIterator[str]:
            events = agent.arun(messages)
            try:
                async for event in events:
                    if event["type"] == "done":  # the page keeps its own history
                        event = {"type": "done", "finish_reason": event.get("finish_reason")}
                    yield sse(event)
            finally:
                await events.aclose()  # closes the model stream when we are closed

        return _EventStream(frames(), media_type="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m app.serve",
                                description="Serve the web chat (the page + POST /chat agent events).")
    p.add_argument("--model-url", default=DEFAULT_MODEL_URL, help="OpenAI-compatible base URL (…/v1)")
    p.add_argument("--kb", default=None, help="knowledge-base JSON file for the lookup tool (sets KB_PATH)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="default", help="model name sent to the server")
    p.add_argument("--max-steps", type=int, default=5, help="model calls per answer (tool steps + answer)")
    p.add_argument("--no-tools", action="store_true", help="do not offer tools to the model")
    args = p.parse_args()
    import uvicorn

    app = create_app(args.model_url, args.kb, model=args.model, max_steps=args.max_steps,
                     tools=not args.no_tools)
    print(f"chat on http://{args.host}:{args.port}  (model server {args.model_url})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
