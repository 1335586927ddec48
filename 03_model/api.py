"""The HTTP layer: OpenAI-compatible routes over an Engine, plus the raw /generate endpoint.

Handlers run on the asyncio event loop and never touch the model: they tokenize (in a worker
thread), submit a Request to the engine and await its events, which the engine thread pushes into
the request's event queue (events.py). Everything that can be rejected (validation, context length, a full
queue) is rejected before a response starts, so errors always come as a status + JSON, never
half-way through a stream.
"""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from transformer.chat import render_prompt

from .copying import CopyRule, chat_rule
from .engine import Engine, EngineClosed, QueueFull
from .events import Done, Failed, Request
from .responses import CHAT_STOP_TOKENS, ChatAssembler, Shapes, usage
from .sampling import SamplingParams
from .schemas import APIError, ChatRequest, CompletionRequest, GenerateRequest, Sampling

STATUS_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


# one encoder for every frame: json.dumps(obj, ensure_ascii=False) builds a new one per call
# (~0.8 us of a ~4 us frame, and a stream sends one frame per token)
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def sse(obj) -> str:
    return f"data: {_to_json(obj)}\n\n"


class BodyLimit:
    """ASGI middleware: refuse request bodies over max_bytes with 413 (by Content-Length, or while
    reading a chunked body)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # an HTTPException passes through FastAPI's body parsing as is
                raise StarletteHTTPException(413, f"request body is larger than {self.max_bytes} bytes")
            return message
        await self.app(scope, limited, send)

    async def _refuse(self, send):
        err = APIError(413, f"request body is larger than {self.max_bytes} bytes", code="request_too_large")
        await JSONResponse(err.body(), 413)({"type": "http"}, None, send)


def invalid(errors: list) -> APIError:
    """pydantic/FastAPI validation errors -> a 400 naming the first bad field (OpenAI uses 400)."""
    err = errors[0]
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    if err.get("type") == "json_invalid":
        return APIError(400, f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
    return APIError(400, f"{'.'.join(loc) or 'body'}: {err.get('msg')}", param=".".join(loc) or None)


async def parse(http: HTTPRequest, cls: type[BaseModel]):
    """The body as JSON whatever the Content-Type says (so `curl -d '{...}'` works too)."""
    try:
        return cls.model_validate_json(await http.body())
    except ValidationError as e:
        raise invalid(e.errors()) from None


def create_app(engine: Engine, tok, model_name: str, max_body_bytes: int = 1 << 20,
               warmup: bool = False, answer_shapes: dict | None = None) -> FastAPI:
    special = tok.special_tokens
    chat_stops = {special[s] for s in CHAT_STOP_TOKENS if s in special}
    text_stops = {special["<|endoftext|>"]} if "<|endoftext|>" in special else set()

    @asynccontextmanager
    async def lifespan(app):
        if not engine.thread.is_alive():
            await asyncio.to_thread(engine.start, warmup)
        yield
        # uvicorn has already waited for in-flight responses; stop the engine (drains anything left)
        await asyncio.to_thread(engine.stop, True, 30.0)

    app = FastAPI(title="llm-stack model server", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(_, e: APIError):
        return JSONResponse(e.body(), e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_, e: RequestValidationError):
        return JSONResponse(invalid(e.errors()).body(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_, e: StarletteHTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail), STATUS_TYPES.get(e.status_code, "server_error")
                                     ).body(), e.status_code)

    @app.exception_handler(Exception)
    async def _internal(_, e: Exception):
        return JSONResponse(APIError(500, f"internal error: {e}", "server_error").body(), 500)

    def copy_rule(prompt: list[int], messages: list[dict], tools: list[dict] | None) -> CopyRule | None:
        return chat_rule(tok, prompt, messages, tools, answer_shapes) if engine.copy_rules else None

    def submit(prompt: list[int], body: Sampling, chat: bool, param: str, copy: CopyRule | None = None) -> Request:
        if not prompt:
            raise APIError(400, "the prompt is empty", param=param)
        try:
            max_tokens = engine.fit_max_tokens(len(prompt), body.max_tokens)
        except ValueError as e:
            raise APIError(400, str(e), param=param, code="context_length_exceeded") from None
        sampling = SamplingParams(1.0 if body.temperature is None else body.temperature, body.top_k or 0,
                                  1.0 if body.top_p is None else body.top_p, body.seed)
        req = Request(prompt, max_tokens, sampling, stop=body.stop or [],
                      stop_ids=chat_stops if chat else text_stops, specials_as_text=not chat,
                      loop=asyncio.get_running_loop(), constrained=chat, copy=copy)
        try:
            return engine.submit(req)
        except QueueFull as e:
            raise APIError(429, f"server busy: {e}", "rate_limit_error", code="queue_full") from None
        except EngineClosed as e:
            raise APIError(503, str(e), "server_error", code="shutting_down") from None

    async def events(req: Request, http: HTTPRequest | None = None) -> AsyncIterator:
        """The request's engine events until Done/Failed. Stopping early (the client went away:
        the stream is cancelled, or `http` reports a disconnect) cancels the generation."""
        finished = False
        loop = asyncio.get_running_loop()
        next_check = loop.time() + 0.5
        try:
            while True:
                if http is None:  # a stream: Starlette cancels this task when the client goes away
                    event = await req.events.get()
                else:             # a plain response: nobody else watches the connection, poll it
                    try:
                        event = await asyncio.wait_for(req.events.get(), 0.5)
                    except asyncio.TimeoutError:
                        event = None
                    if loop.time() >= next_check:
                        next_check = loop.time() + 0.5
                        if await http.is_disconnected():
                            return
                    if event is None:
                        continue
                finished = isinstance(event, (Done, Failed))
                yield event
                if finished:
                    return
        finally:
            if not finished:
                engine.cancel(req)

    def stream(frames: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def error_frame(event: Failed) -> str:
        return sse(APIError(500, event.message, "server_error").body())

    @app.get("/health")
    async def health():
        h = engine.health()
        return {"status": "draining" if h.pop("draining") else "ok", "model": model_name,
                "device": str(engine.device), "context_window": engine.block_size, **h}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "llm-stack"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest):
        body = await parse(http, ChatRequest)
        messages = [m.as_dict() for m in body.messages]
        try:
            prompt = await asyncio.to_thread(render_prompt, messages, tok)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise APIError(400, f"messages: {e or 'no user or tool message'}", param="messages") from None
        copy = await asyncio.to_thread(copy_rule, prompt, messages, body.tools)  # a large `tools` costs time
        req = submit(prompt, body, chat=True, param="messages", copy=copy)
        asm, shapes = ChatAssembler(tok), Shapes(body.model or model_name, chat=True)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def frames():
            yield sse(shapes.chunk({"role": "assistant", "content": ""}))
            async for ev in events(req):
                if isinstance(ev, Failed):
                    yield error_frame(ev)
                elif isinstance(ev, Done):
                    yield sse(shapes.chunk({}, asm.finish_reason(ev.finish_reason)))
                    if include_usage:
                        yield sse(shapes.usage_chunk(ev))
                else:
                    for delta in asm.feed(ev.text, ev.special):
                        yield sse(shapes.chunk(delta))
            yield "data: [DONE]\n\n"

        if body.stream:
            return stream(frames())
        async for ev in events(req, http):
            if isinstance(ev, Failed):
                raise APIError(500, ev.message, "server_error")
            if isinstance(ev, Done):
                return shapes.final(asm.message(), asm.finish_reason(ev.finish_reason), ev)
            asm.feed(ev.text, ev.special)
        return JSONResponse({}, 499)  # the client is gone; nobody reads this

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest):
        body = await parse(http, CompletionRequest)
        prompt = await asyncio.to_thread(tok.encode, body.prompt, "all")
        req = submit(prompt, body, chat=False, param="prompt")
        shapes = Shapes(body.model or model_name, chat=False)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def frames():
            async for ev in events(req):
                if isinstance(ev, Failed):
                    yield error_frame(ev)
                elif isinstance(ev, Done):
                    yield sse(shapes.chunk("", ev.finish_reason))
                    if include_usage:
                        yield sse(shapes.usage_chunk(ev))
                elif ev.text:
                    yield sse(shapes.chunk(ev.text))
            yield "data: [DONE]\n\n"

        if body.stream:
            return stream(frames())
        parts = []
        async for ev in events(req, http):
            if isinstance(ev, Failed):
                raise APIError(500, ev.message, "server_error")
            if isinstance(ev, Done):
                return shapes.final("".join(parts), ev.finish_reason, ev)
            parts.append(ev.text)
        return JSONResponse({}, 499)

    @app.post("/generate")
    async def generate(http: HTTPRequest):
        body = await parse(http, GenerateRequest)
        prompt = await asyncio.to_thread(tok.encode, body.prompt, "all")
        req = submit(prompt, body, chat=False, param="prompt")

        async def frames():
            async for ev in events(req):
                if isinstance(ev, Failed):
                    yield error_frame(ev)
                elif isinstance(ev, Done):
                    yield sse({"done": True, "finish_reason": ev.finish_reason, "usage": usage(ev)})
                elif ev.text:
                    yield sse({"token": ev.text})

        return stream(frames())

    return app
