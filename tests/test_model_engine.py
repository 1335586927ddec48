"""The model server's engine in-process: batching equals sequential, sampling, stop strings, the chat
state machine on scripted token sequences, cancellation and the bounded queue. CPU, tiny model."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import torch

from model.engine import Done, Engine, QueueFull, Request, Token
from model.events import EventQueue
from model.responses import CHAT_STOP_TOKENS, ChatAssembler
from model.sampling import SamplingParams, sample
from model.textstream import TextStream
from tiny_checkpoint import CHAT_PROMPT, CONVERSATIONS, TOOL_PROMPT, load_tiny_run
from transformer import GPT
from transformer.chat import render_prompt

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def engine(tiny):
    model, tok = tiny
    eng = Engine(model, tok, max_batch=4, max_queue=32).start()
    yield eng
    eng.stop(drain=False, timeout=10)


def collect(req: Request, timeout: float = 30.0) -> tuple[str, Done]:
    parts, deadline = [], time.time() + timeout
    while True:
        ev = req.events.get(timeout=max(0.0, deadline - time.time()))
        if isinstance(ev, Done):
            return "".join(parts), ev
        assert isinstance(ev, Token), ev
        parts.append(ev.text)


def prompts(tok) -> list[list[int]]:
    texts = [TOOL_PROMPT, CHAT_PROMPT, "Numbers like 1234", "The quick brown fox", "héllo wörld ✓", "abc",
             "How can I help you today?", "lazy dog. 5678", "What is 1234 plus", "Hello there"]
    out = [render_prompt([{"role": "user", "content": t}], tok) for t in texts[:2]]
    return out + [tok.encode(t) for t in texts[2:]]


def test_greedy_matches_model_generate(tiny, engine):
    model, tok = tiny
    prompt = render_prompt(CONVERSATIONS[0][:1], tok)
    text, done = collect(engine.submit(Request(prompt, 40, GREEDY)))
    ref = model.generate(torch.tensor([prompt]), 40, temperature=0)[0, len(prompt):].tolist()
    assert text == tok.decode(ref)
    assert (done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("length", len(prompt), 40)
    assert text.startswith("<|thought|>I need to compute 1234 + 5678.<|action|>calc(1234 + 5678)<|observation|>")


def test_continuous_batching_equals_sequential(tiny, engine):
    """10 requests of different lengths through 4 slots: they queue, join the running batch as
    others finish (rows get compacted), and each result equals the request run alone."""
    model, tok = tiny
    cases = [(p, 3 + 7 * i % 45) for i, p in enumerate(prompts(tok))]
    alone = [collect(engine.submit(Request(p, n, GREEDY)))[0] for p, n in cases]
    assert engine.health()["stats"]["peak_active"] == 1
    reqs = [engine.submit(Request(p, n, GREEDY)) for p, n in cases]
    together = [collect(r)[0] for r in reqs]
    assert together == alone
    h = engine.health()
    assert h["stats"]["peak_active"] == 4 and h["slots"]["active"] == 0
    assert (engine.cache.lengths == 0).all()


def test_batched_prefill_equals_one_by_one(tiny):
    """Prompts admitted together are prefilled together (right-padded to the longest, at most
    prefill_tokens padded tokens per forward): each request gets exactly what it gets prefilled
    alone, greedy or seeded, also when it ends at its first token."""
    model, tok = tiny
    cases = [dict(prompt=p, max_tokens=1 if i % 4 == 0 else 12,
                  sampling=GREEDY if i % 2 else SamplingParams(temperature=1.0, seed=i))
             for i, p in enumerate(prompts(tok))]
    results, prefills = [], []

    def spy(prompts, cache, first_row=0):  # records each prefill forward as (rows, longest prompt)
        prefills[-1].append((len(prompts), max(map(len, prompts))))
        return GPT.prefill(model, prompts, cache, first_row)
    model.prefill = spy
    try:
        for max_batch, prefill_tokens in ((1, 2048), (len(cases), 2048), (len(cases), 40)):
            eng = Engine(model, tok, max_batch=max_batch, prefill_tokens=prefill_tokens)
            reqs = [eng.submit(Request(**c)) for c in cases]  # all wait before the thread starts
            prefills.append([])
            eng.start()
            try:
                results.append([(text, done.finish_reason, done.completion_tokens)
                                for text, done in map(collect, reqs)])
            finally:
                eng.stop(drain=False, timeout=10)
    finally:
        del model.prefill  # back to the class's method
    assert results[1] == results[0] and results[2] == results[0]
    assert len(prefills[0]) == len(cases) and {b for b, _ in prefills[0]} == {1}
    assert prefills[1] == [(len(cases), max(map(len, (c["prompt"] for c in cases))))]
    assert len(prefills[2]) > 1 and all(b == 1 or b * T <= 40 for b, T in prefills[2])
    assert sum(b for b, _ in prefills[2]) == len(cases)


def test_seeded_sampling_is_reproducible_in_any_batch(tiny, engine):
    _, tok = tiny
    p = prompts(tok)[3]
    params = SamplingParams(temperature=1.0, top_k=50, top_p=0.95, seed=1234)
    alone = collect(engine.submit(Request(p, 30, params)))[0]
    others = [engine.submit(Request(q, 30, SamplingParams(temperature=1.0))) for q in prompts(tok)[:3]]
    again = collect(engine.submit(Request(p, 30, params)))[0]
    for r in others:
        collect(r)
    assert again == alone
    other_seed = collect(engine.submit(Request(p, 30, SamplingParams(temperature=1.0, seed=99))))[0]
    assert other_seed != alone


def test_stop_token_and_stop_string(tiny, engine):
    _, tok = tiny
    S = tok.special_tokens
    prompt = render_prompt(CONVERSATIONS[1][:1], tok)
    text, done = collect(engine.submit(Request(prompt, 60, GREEDY, stop_ids={S["<|end|>"]})))
    assert (text, done.finish_reason) == ("<|thought|>A greeting.<|answer|>Hello! How can I help?", "stop")
    text, done = collect(engine.submit(Request(prompt, 60, GREEDY, stop=["How c", "zzz"])))
    assert (text, done.finish_reason) == ("<|thought|>A greeting.<|answer|>Hello! ", "stop")


def test_event_queue_keeps_order_across_cancelled_gets():
    """The asyncio side of a request: a get() given up (wait_for's timeout, as the non-streaming
    handlers poll) loses nothing, and events come out in the order they were put."""
    async def main():
        q = EventQueue()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get(), 0.01)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: [q.put_nowait(i) for i in range(3)])
        got = [await asyncio.wait_for(q.get(), 5)]
        q.put_nowait(3)
        got += [await q.get() for _ in range(3)]
        waiter = asyncio.create_task(q.get())  # one consumer waits; its get() is cancelled just
        await asyncio.sleep(0)                  # after the event that would wake it arrived
        q.put_nowait(4)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        got.append(await asyncio.wait_for(q.get(), 5))
        return got
    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_text_stream_holds_back_possible_stop_prefixes(tiny):
    _, tok = tiny
    ts = TextStream(tok, stop=["How c"])
    released = []
    for t in tok.encode("Hello! How are you? How can"):
        text, special, stopped = ts.push(t)
        released.append(text)
        assert special is None
        # nothing that could still turn into the stop string has been sent
        assert not "".join(released).endswith(("H", "Ho", "How", "How "))
        if stopped:
            break
    assert stopped and "".join(released) == "Hello! How are you? "
    ts = TextStream(tok, stop=["xyz"])
    out = "".join(ts.push(t)[0] for t in tok.encode("abc xy")) + ts.close()
    assert out == "abc xy"  # at the end, held text that never became a stop string is released


def test_text_stream_utf8_and_specials(tiny):
    _, tok = tiny
    ts = TextStream(tok)
    e_acute = "é".encode()
    assert [ts.push(b)[0] for b in e_acute] == ["", "é"]  # byte tokens 0xC3, 0xA9
    chat = TextStream(tok, specials_as_text=False, stop=["Hel"])
    ids = tok.encode("He<|answer|>", allowed_special="all")
    outs = [chat.push(t) for t in ids]
    assert outs[-1] == ("He", tok.special_tokens["<|answer|>"], False)  # held text released first


def run_chat(tok, script: str, max_tokens: int = 1000) -> tuple[list[dict], str]:
    """Feed a scripted model output through the engine's text path and the chat state machine."""
    stops = {tok.special_tokens[s] for s in CHAT_STOP_TOKENS}
    ts, asm, deltas, reason = TextStream(tok, specials_as_text=False), ChatAssembler(tok), [], "length"
    for n, t in enumerate(tok.encode(script, allowed_special="all"), 1):
        text, special, _ = ts.push(t)
        deltas += asm.feed(text, special)
        if t in stops:
            reason = "stop"
            break
        if n == max_tokens:
            deltas += asm.feed(ts.close(), None)
            break
    return deltas, asm.finish_reason(reason)


def test_chat_state_machine_tool_call(tiny):
    _, tok = tiny
    deltas, reason = run_chat(tok, "<|thought|>I think.<|action|>calc(1 + 2)<|observation|>junk")
    assert reason == "tool_calls"
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "I think."
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and deltas[-1] is not None
    call = calls[0][0]
    assert call["function"] == {"name": "calc", "arguments": '{"expression": "1 + 2"}'}
    assert call["index"] == 0 and call["type"] == "function" and call["id"].startswith("call_")
    assert not any("content" in d for d in deltas)
    deltas, _ = run_chat(tok, "<|action|>lookup(capital of France)<|observation|>")
    assert deltas[0]["tool_calls"][0]["function"]["arguments"] == '{"query": "capital of France"}'


def test_chat_state_machine_answer_bad_action_and_length(tiny):
    _, tok = tiny
    deltas, reason = run_chat(tok, "<|thought|>Easy.<|answer|>6912.<|end|>more")
    assert reason == "stop"
    assert "".join(d.get("content", "") for d in deltas) == "6912."
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Easy."
    deltas, reason = run_chat(tok, "<|action|>not an action<|observation|>")
    assert (deltas, reason) == ([{"content": "not an action"}], "stop")
    deltas, reason = run_chat(tok, "<|thought|>Hm<|action|>calc(1 +", max_tokens=5)
    assert reason == "length" and not any("tool_calls" in d or "content" in d for d in deltas)
    deltas, _ = run_chat(tok, "plain text<|end|>")  # no channel token: content
    assert "".join(d["content"] for d in deltas) == "plain text"


def test_sampling_rules():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    argmax = logits.argmax(-1)
    assert torch.equal(sample(logits, [SamplingParams(temperature=0.0)] * 3, gens), argmax)
    assert torch.equal(sample(logits, [SamplingParams(top_k=1)] * 3, gens), argmax)
    assert torch.equal(sample(logits, [SamplingParams(top_p=1e-6)] * 3, gens), argmax)
    mixed = [SamplingParams(temperature=0.0), SamplingParams(top_k=3, seed=1), SamplingParams(top_p=0.5)]
    top3 = set(logits[1].topk(3).indices.tolist())
    for _ in range(50):
        out = sample(logits, mixed, gens)
        assert out[0] == argmax[0] and int(out[1]) in top3
    # the exponential race samples the softmax distribution
    row = torch.tensor([[0.0, 1.0, 2.0, -9.0]])
    g = torch.Generator().manual_seed(0)
    counts = Counter(int(sample(row, [SamplingParams()], [g])) for _ in range(3000))
    expected = torch.softmax(row[0], -1) * 3000
    assert all(abs(counts[i] - expected[i].item()) < 0.1 * 3000 for i in range(4))
    for bad in (dict(temperature=-0.1), dict(temperature=2.5), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1)):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_max_tokens_clamped_to_the_window(tiny, engine):
    assert engine.fit_max_tokens(200, None) == 56 and engine.fit_max_tokens(200, 1000) == 56
    assert engine.fit_max_tokens(10, 5) == 5
    for bad in (0, 256, 300):
        with pytest.raises(ValueError):
            engine.fit_max_tokens(bad, 1)
    _, tok = tiny
    prompt = [tok.encode("a")[0]] * 250
    text, done = collect(engine.submit(Request(prompt, engine.fit_max_tokens(250, 100), GREEDY)))
    assert (done.finish_reason, done.completion_tokens) == ("length", 6)
    with pytest.raises(ValueError):
        engine.submit(Request(prompt, 7, GREEDY))


def test_padded_vocab_never_samples_undecodable_ids(tiny):
    """Training pads the vocab (e.g. to a multiple of 64); ids past the tokenizer must never come out."""
    _, tok = tiny
    from transformer import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size + 64, n_layer=1, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        model.transformer.wte.weight[tok.vocab_size:] *= 100  # the padding ids would win every argmax
    eng = Engine(model, tok, max_batch=2).start()
    try:
        for params in (GREEDY, SamplingParams(temperature=2.0, seed=0)):
            text, done = collect(eng.submit(Request(tok.encode("abc"), 20, params)))
            assert done.finish_reason == "length" and done.completion_tokens == 20
        assert eng.health()["stats"]["failed"] == 0
    finally:
        eng.stop(drain=False, timeout=10)


def test_cancel_frees_the_slot_and_queue_is_bounded(tiny):
    model, tok = tiny
    eng = Engine(model, tok, max_batch=1, max_queue=1, step_delay=0.02).start()
    try:
        p = prompts(tok)[2]
        a = eng.submit(Request(p, 200, GREEDY))
        assert isinstance(a.events.get(timeout=10), Token)  # a is running in the only slot
        b = eng.submit(Request(p, 200, GREEDY))              # b waits
        with pytest.raises(QueueFull):
            eng.submit(Request(p, 5, GREEDY))
        eng.cancel(a)
        while not isinstance(ev := a.events.get(timeout=10), Done):
            pass
        assert ev.finish_reason == "cancelled" and ev.completion_tokens < 200
        assert isinstance(b.events.get(timeout=10), Token)  # b got the slot
        eng.cancel(b)
        deadline = time.time() + 10
        while eng.health()["slots"]["active"] and time.time() < deadline:
            time.sleep(0.01)
        h = eng.health()
        assert h["slots"] == {"total": 1, "active": 0, "free": 1} and h["stats"]["cancelled"] == 2
    finally:
        eng.stop(drain=False, timeout=10)
    assert not eng.thread.is_alive()


@pytest.mark.gpu
def test_cuda_graph_decode_matches_eager(tiny):
    """bf16 on the GPU: replayed graphs (padded batch buckets, fixed kv length under a mask) give the
    eager forward's logits and argmax, step(None) continues from the device-side ids, a graph of
    several steps gives the eager decoder's ids, and the engine's greedy output (overlapped steps,
    several per launch) equals model.generate's."""
    from model.decode import EagerDecoder, GraphDecoder
    model, tok = tiny
    model = model.to("cuda", torch.bfloat16)
    prompt_sets = prompts(tok)[:3]
    for cls in (EagerDecoder, GraphDecoder):
        cache = model.new_kv_cache(4)
        dec = cls(model, cache) if cls is EagerDecoder else cls(model, cache, multi_steps=4)
        with torch.no_grad():
            for r, p in enumerate(prompt_sets):  # rows of different lengths
                model(torch.tensor([p], device="cuda"), kv_cache=cache, rows=slice(r, r + 1))
            steps = []
            for tokens in ([5, 6, 7],) * 3 + (None,) * 2:
                logits, ids = dec.step(tokens)  # graph outputs are static buffers: copy at once
                steps.append((logits.float(), ids.clone()))
            many = dec.step(None, steps=4)[1].clone()  # (4, 3)
        if cls is EagerDecoder:
            ref, ref_many = steps, many
    for (a, a_ids), (b, b_ids) in zip(ref, steps):
        torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)
        assert b_ids.shape == (1, 3) and torch.equal(b.argmax(-1), b_ids[0])
    assert many.shape == (4, 3) and torch.equal(many, ref_many)  # the same kernels on the same inputs
    eng = Engine(model, tok, max_batch=4).start(warmup=True)
    try:
        # batch buckets 1, 2, 4, each with 1 and 4 steps; the decode kernels read each row's own
        # length, so one kv bucket
        assert isinstance(eng.decoder, GraphDecoder) and len(eng.decoder.graphs) == 6
        reqs = [eng.submit(Request(p, 30, GREEDY)) for p in prompt_sets]
        for p, r in zip(prompt_sets, reqs):
            ref = model.generate(torch.tensor([p], device="cuda"), 30, temperature=0)[0, len(p):].tolist()
            assert collect(r)[0] == tok.decode(ref)
    finally:
        eng.stop(drain=False, timeout=10)


@pytest.mark.parametrize("decode_steps", [1, 3])
def test_overlapped_steps_equal_step_by_step(tiny, decode_steps):
    """overlap=True (the next step launched from the device-side ids before the host reads this
    step's tokens), also with several greedy steps per launch, gives every request exactly what the
    plain step-by-step loop gives: greedy and seeded sampling, stop tokens and strings, max_tokens,
    rows joining and leaving, rows under the protocol grammar."""
    model, tok = tiny
    S = tok.special_tokens
    ps = prompts(tok)
    cases = []
    for i, p in enumerate(ps):
        sampling = GREEDY if i % 3 else SamplingParams(temperature=1.0, top_k=40, seed=i)
        cases.append(dict(prompt=p, max_tokens=2 + 9 * i % 40, sampling=sampling,
                          stop=["o"] if i % 4 == 1 else [], stop_ids={S["<|end|>"]} if i % 2 else set(),
                          constrained=i % 5 < 2))  # some rows under the protocol grammar
    results = {}
    for overlap in (False, True):
        eng = Engine(model, tok, max_batch=4, overlap=overlap, decode_steps=decode_steps if overlap else 1)
        launches = []
        step = eng.decoder.step
        eng.decoder.step = lambda tokens, steps=1, states=None: launches.append(steps) or step(tokens, steps, states)
        eng.start()
        try:
            reqs = [eng.submit(Request(**c)) for c in cases]
            results[overlap] = [(text, done.finish_reason, done.completion_tokens)
                                for text, done in map(collect, reqs)]
            stats = eng.health()["stats"]
        finally:
            eng.stop(drain=False, timeout=10)
        assert (stats["ran_ahead"] > 0) == overlap
        assert set(launches) == ({1, decode_steps} if overlap else {1})  # multi-step launches happened
        assert stats["steps"] == sum(launches)
    assert results[True] == results[False]
    assert {r[1] for r in results[True]} == {"stop", "length"}
