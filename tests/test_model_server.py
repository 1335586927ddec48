"""The model server live: a uvicorn subprocess on a free loopback port, driven by the official
`openai` client (and httpx for the raw endpoint and malformed requests). CPU, tiny overfit model."""
from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch

from live_server import Server
from tiny_checkpoint import CHAT_PROMPT, CONVERSATIONS, TOOL_PROMPT, make_tiny_run
from transformer.checkpoint import load_checkpoint
from transformer.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ckpt = make_tiny_run(tmp_path_factory.mktemp("tiny"))
    torch.set_num_threads(1)
    model, meta = load_checkpoint(ckpt)
    return ckpt, model, Tokenizer.load(meta["tokenizer"])


@pytest.fixture(scope="module")
def server(run):
    s = Server(run[0], "--max-batch", "16")
    yield s
    s.close()


@pytest.fixture(scope="module")
def slow(run):
    """One slot, one queue place, 20 ms per decode step: streams last long enough to interrupt."""
    s = Server(run[0], "--max-batch", "1", "--max-queue", "1", "--step-delay", "0.02")
    yield s
    s.close()


def greedy(model, tok, prompt: str, n: int) -> str:
    ids = tok.encode(prompt, allowed_special="all")
    out = model.generate(torch.tensor([ids]), n, temperature=0)[0, len(ids):].tolist()
    eot = tok.special_tokens["<|endoftext|>"]
    return tok.decode(out[:out.index(eot)] if eot in out else out)


def sse_frames(resp: httpx.Response) -> list:
    return [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]


def test_health_and_models(server):
    h = server.health()
    assert h["status"] == "ok" and h["slots"] == {"total": 16, "active": 0, "free": 16}
    assert h["context_window"] == 256
    assert [m.id for m in server.client.models.list().data] == ["agent"]


def test_chat_tool_call_non_stream_and_stream(server):
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    r = server.client.chat.completions.create(model="agent", messages=messages, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.reasoning_content == "I need to compute 1234 + 5678."
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == \
        ("function", "calc", {"expression": "1234 + 5678"})
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(server.client.chat.completions.create(model="agent", messages=messages, temperature=0,
                                                        stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "I need to compute 1234 + 5678."
    calls = [d.tool_calls for d in deltas if d.tool_calls]
    assert len(calls) == 1 and calls[0][0].function.name == "calc"
    assert calls[0][0].function.arguments == call.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_chat_with_tools_decodes_under_the_copy_rules(server):
    """With the agent's `tools` the memorised call still comes out (its words and numbers are the
    user's and the tools'); tools of any shape are only words to the rules, never a crash."""
    from agent.loop import tool_schemas
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    r = server.client.chat.completions.create(model="agent", messages=messages, temperature=0, tools=tool_schemas())
    call = r.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("calc", {"expression": "1234 + 5678"})
    for tools in ([{"type": "function", "function": {"name": 5}}], [{"function": [[["x"] * 3] * 3]}],
                  [{"type": "function", "function": {"name": "t", "description": "word " * 20000}}]):
        resp = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                          json={"messages": messages, "temperature": 0, "max_tokens": 8, "tools": tools})
        assert resp.status_code == 200 and resp.json()["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    resp = httpx.post(server.url + "/v1/chat/completions", json={"messages": messages, "tools": ["calc"]})
    assert resp.status_code == 400 and "tools" in resp.json()["error"]["message"]


def test_chat_after_tool_result_and_plain_chat(server):
    tool_turn = CONVERSATIONS[0][:3]  # user, assistant with the tool call, tool message "6912"
    for stream in (False, True):
        r = server.client.chat.completions.create(model="agent", messages=tool_turn, temperature=0, stream=stream)
        if stream:
            chunks = list(r)
            content = "".join(c.choices[0].delta.content or "" for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            content, finish = r.choices[0].message.content, r.choices[0].finish_reason
        assert (content, finish) == ("6912.", "stop")
    r = server.client.chat.completions.create(model="agent", messages=[{"role": "user", "content": CHAT_PROMPT}],
                                              temperature=0, max_completion_tokens=100)
    m = r.choices[0].message
    assert (m.content, m.reasoning_content, r.choices[0].finish_reason) == ("Hello! How can I help?", "A greeting.", "stop")
    r = server.client.chat.completions.create(model="agent", messages=[{"role": "user", "content": CHAT_PROMPT}],
                                              temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_completions_equal_in_process_greedy(server, run):
    _, model, tok = run
    prompt = "<|user|>Hi there!<|end|><|assistant|>"  # specials are allowed in raw prompts
    expected = greedy(model, tok, prompt, 40)
    r = server.client.completions.create(model="agent", prompt=prompt, max_tokens=40, temperature=0)
    assert r.choices[0].text == expected and r.object == "text_completion"
    assert r.usage.completion_tokens == 40 and r.choices[0].finish_reason == "length"
    chunks = list(server.client.completions.create(model="agent", prompt=prompt, max_tokens=40, temperature=0,
                                                   stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length"
    r = server.client.completions.create(model="agent", prompt=prompt, max_tokens=40, temperature=0, stop=["help"])
    assert (r.choices[0].text, r.choices[0].finish_reason) == (expected[:expected.index("help")], "stop")


def test_generate_endpoint(server, run):
    _, model, tok = run
    prompt = "The quick brown fox"
    with httpx.stream("POST", server.url + "/generate", json={"prompt": prompt, "max_tokens": 30,
                                                              "temperature": 0}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(f) for f in sse_frames(resp)]
    assert "".join(f["token"] for f in frames[:-1]) == greedy(model, tok, prompt, 30)
    assert frames[-1] == {"done": True, "finish_reason": "length",
                          "usage": {"prompt_tokens": len(tok.encode(prompt)), "completion_tokens": 30,
                                    "total_tokens": len(tok.encode(prompt)) + 30}}


def test_seed_makes_sampling_reproducible(server):
    kw = dict(model="agent", prompt="Hello there", max_tokens=30, temperature=1.0, top_p=0.9,
              extra_body={"top_k": 40})
    a = server.client.completions.create(seed=7, **kw).choices[0].text
    assert server.client.completions.create(seed=7, **kw).choices[0].text == a


def test_16_concurrent_streams_equal_sequential(server, run):
    _, model, tok = run
    words = ["The quick", "Hello", "Numbers like 12", "lazy dog", "héllo", "How can", "brown fox", "What is"]
    prompts = [f"{w} {i}" for i, w in enumerate(words * 2)]

    def one(prompt: str) -> str:
        chunks = server.client.completions.create(model="agent", prompt=prompt, max_tokens=24 + len(prompt),
                                                  temperature=0, stream=True)
        return "".join(c.choices[0].text for c in chunks)
    sequential = [one(p) for p in prompts]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(one, prompts))
    assert concurrent == sequential
    assert sequential[0] == greedy(model, tok, prompts[0], 24 + len(prompts[0]))
    assert server.health()["stats"]["peak_active"] > 1


def test_bad_input(server, run):
    c = server.client
    msgs = [{"role": "user", "content": "hi"}]

    def err(call, **kw) -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as e:
            call(model="agent", **kw)
        assert set(e.value.body) == {"message", "type", "param", "code"}, e.value.body
        return e.value
    e = err(c.completions.create, prompt="abc " * 300)
    assert e.status_code == 400 and e.body["code"] == "context_length_exceeded"
    assert err(c.chat.completions.create, messages=[{"role": "user", "content": "x" * 2000}]).status_code == 400
    for bad in (dict(temperature=2.5), dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(max_tokens=0),
                dict(extra_body={"top_k": -1}), dict(extra_body={"n": 2})):
        e = err(c.chat.completions.create, messages=msgs, **bad)
        assert e.status_code == 400 and e.body["type"] == "invalid_request_error", bad
    assert err(c.chat.completions.create, messages=[{"role": "assistant", "content": "x"}]).status_code == 400
    assert err(c.chat.completions.create, messages=[{"role": "wizard", "content": "x"}]).status_code == 400
    assert err(c.chat.completions.create, messages=[{"role": "system", "content": "x"}]).status_code == 400
    # max_tokens past the window is clamped to what fits
    r = c.completions.create(model="agent", prompt="a" * 200, max_tokens=10_000, temperature=0)
    assert r.usage.prompt_tokens + r.usage.completion_tokens <= 256
    assert r.choices[0].finish_reason in ("length", "stop")
    for body, expect in ((b'{"prompt": "hi",', 400), (b'{"prompt": 5}', 400), (b'[1, 2]', 400),
                         (b'{"prompt": "hi", "temperature": "hot"}', 400), (b'{"prompt": "hi"}' + b" " * (1 << 20), 413)):
        resp = httpx.post(server.url + "/v1/completions", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == expect, (body[:40], resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    resp = httpx.get(server.url + "/v1/nothing")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_disconnect_frees_the_slot(slow):
    before = slow.health()["stats"]["cancelled"]
    with httpx.stream("POST", slow.url + "/v1/completions",
                      json={"prompt": "Hello", "max_tokens": 200, "temperature": 0, "stream": True}) as resp:
        lines = resp.iter_lines()  # keep it: a dropped httpx line iterator closes the connection
        next(lines)                 # one frame arrived: the sequence is running
        assert slow.health()["slots"]["active"] == 1
    deadline = time.time() + 5  # the client hung up after ~1 of 200 tokens (4 s of generation)
    while (h := slow.health())["slots"]["active"] and time.time() < deadline:
        time.sleep(0.02)
    assert h["slots"] == {"total": 1, "active": 0, "free": 1} and h["stats"]["cancelled"] == before + 1


def test_disconnect_of_a_non_streaming_request_frees_the_slot(slow):
    before = slow.health()["stats"]["cancelled"]
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.3 s of a ~4 s generation
        httpx.post(slow.url + "/v1/completions", json={"prompt": "Hello", "max_tokens": 200, "temperature": 0},
                   timeout=httpx.Timeout(5, read=0.3))
    deadline = time.time() + 5
    while (h := slow.health())["stats"]["cancelled"] == before and time.time() < deadline:
        time.sleep(0.05)
    assert h["stats"]["cancelled"] == before + 1 and h["slots"]["active"] == 0


def test_full_queue_gives_429(slow):
    body = {"prompt": "Hello", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.stream("POST", slow.url + "/v1/completions", json=body) as a:
        lines = a.iter_lines()
        next(lines)                                        # a holds the only slot
        with httpx.stream("POST", slow.url + "/v1/completions", json=body) as b:
            assert b.status_code == 200                    # b holds the only queue place
            with pytest.raises(openai.RateLimitError) as e:
                slow.client.completions.create(model="agent", prompt="Hello", max_tokens=5)
            assert e.value.body["code"] == "queue_full"


def test_sigterm_drains_in_flight_stream_then_exits_0(run):
    s = Server(run[0], "--max-batch", "2", "--step-delay", "0.02")
    try:
        with httpx.stream("POST", s.url + "/v1/completions", timeout=30,
                          json={"prompt": "Hello", "max_tokens": 80, "temperature": 0, "stream": True}) as resp:
            lines = resp.iter_lines()
            first = next(lines)
            s.proc.send_signal(signal.SIGTERM)  # mid-stream: ~80 steps x 20 ms still to go
            frames = [first[6:]] + [line[6:] for line in lines if line.startswith("data: ")]
        assert frames[-1] == "[DONE]"
        chunks = [json.loads(f) for f in frames[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.close()


def test_malformed_answer_shapes_are_a_clear_error(run, tmp_path):
    """meta.json's data.answer_shapes (agent_sft.train writes them) are checked when the server loads."""
    import shutil

    from model.serve import load
    ckpt = tmp_path / "agent"
    shutil.copytree(run[0], ckpt)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["data"] = {"answer_shapes": {"calc": {"": ["The answer is ", "."]}}}
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="answer_shapes must map a tool to its result kinds"):
        load(str(ckpt), None, torch.device("cpu"))
