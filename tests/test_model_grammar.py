"""03_model's protocol grammar: its tables say what grammar.py's table says, the host and the device
transitions agree, decoding follows it (the eager decoder and the engine, greedy and sampled), and
without it the same tiny model breaks the protocol. CPU, tiny model."""
from __future__ import annotations

import pytest
import torch

from model.engine import Done, Engine, Request, Token
from model.grammar import ACTION, ANSWER, FREE, MOVES, STEP, THOUGHT, ProtocolGrammar
from model.responses import CHAT_STOP_TOKENS
from model.sampling import SamplingParams
from tiny_checkpoint import load_tiny_run
from transformer.chat import render_prompt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny_run(tmp_path_factory.mktemp("tiny"))


def test_tables(tiny):
    """Each state allows exactly its row of the table; text keeps the state; padding columns past
    the tokenizer are never allowed in a constrained state; host and device transitions agree."""
    model, tok = tiny
    S, n_vocab, width = tok.special_tokens, tok.vocab_size, tok.vocab_size + 7
    g = ProtocolGrammar(S, n_vocab, width)
    specials = set(S.values())
    text = [i for i in range(n_vocab) if i not in specials]
    assert g.allowed[FREE].all()
    assert set(g.allowed[STEP].nonzero().flatten().tolist()) == {S["<|thought|>"], S["<|action|>"], S["<|answer|>"]}
    for state, closers in ((THOUGHT, ("<|action|>", "<|answer|>")), (ACTION, ("<|observation|>",)),
                           (ANSWER, ("<|end|>",))):
        assert set(g.allowed[state].nonzero().flatten().tolist()) == set(text) | {S[c] for c in closers}
    assert not g.allowed[1:, n_vocab:].any()
    assert torch.isinf(g.bias[~g.allowed]).all() and (g.bias[g.allowed] == 0).all()
    for state in range(len(g.allowed)):
        tokens = g.allowed[state].nonzero().flatten()
        device = g.step(torch.full_like(tokens, state), tokens).tolist()
        assert device == [g.advance(state, t) for t in tokens.tolist()]
    assert g.advance(STEP, S["<|thought|>"]) == THOUGHT and g.advance(THOUGHT, text[0]) == THOUGHT
    assert g.advance(THOUGHT, S["<|action|>"]) == ACTION and g.advance(ACTION, S["<|observation|>"]) == FREE
    with pytest.raises(ValueError, match="special tokens"):
        ProtocolGrammar({"<|end|>": 3}, 10, 10)


def follows_protocol(events: list, S: dict[str, int]) -> bool:
    """A chat completion (Token events, specials as ids) is a valid start of an assistant turn:
    a step or answer tag first, text only inside a thought / action / answer, tags in order."""
    state = STEP
    for ev in events:
        if isinstance(ev, Done):
            return True
        if ev.special is None:
            if ev.text and state not in (THOUGHT, ACTION, ANSWER):
                return False
            continue
        name = next(k for k, v in S.items() if v == ev.special)
        if state == FREE or name not in MOVES[state]:
            return False
        state = MOVES[state][name]
    return True


def run_chat(engine: Engine, prompts: list[list[int]], sampling: SamplingParams, constrained: bool,
             stop_ids: set[int]) -> list[list]:
    reqs = [engine.submit(Request(p, 40, sampling, stop_ids=stop_ids, specials_as_text=False,
                                  constrained=constrained)) for p in prompts]
    out = []
    for r in reqs:
        events = []
        while not events or not isinstance(events[-1], Done):
            events.append(r.events.get(timeout=30))
        assert all(isinstance(e, (Token, Done)) for e in events)
        out.append(events)
    return out


def test_engine_follows_the_protocol_only_with_the_grammar(tiny):
    """Sampling hot (temperature 2) from the tiny model breaks the protocol in many turns; the same
    requests under the grammar never do, and greedy turns under it still equal an unconstrained
    greedy turn that happens to follow the protocol. Completions (not constrained) are untouched."""
    model, tok = tiny
    S = tok.special_tokens
    stops = {S[s] for s in CHAT_STOP_TOKENS}
    questions = ["What is 1234 plus 5678?", "Hi there!", "Who wrote Hamlet?", "abc", "2 + 2", "tell me more"]
    prompts = [render_prompt([{"role": "user", "content": q}], tok) for q in questions] * 4
    hot = [SamplingParams(temperature=2.0, seed=i) for i in range(len(prompts))]
    eng = Engine(model, tok, max_batch=4).start()
    free = Engine(model, tok, max_batch=4, grammar=False).start()
    try:
        broken = [run_chat(free, [p], s, True, stops)[0] for p, s in zip(prompts, hot)]
        kept = [run_chat(eng, [p], s, True, stops)[0] for p, s in zip(prompts, hot)]
        assert sum(not follows_protocol(e, S) for e in broken) >= 3  # the test can fail
        assert all(follows_protocol(e, S) for e in kept)
        assert {e[-1].finish_reason for e in kept} <= {"stop", "length"}
        greedy = SamplingParams(temperature=0.0)
        g_on = run_chat(eng, prompts[:6], greedy, True, stops)
        g_off = run_chat(free, prompts[:6], greedy, True, stops)
        for on, off in zip(g_on, g_off):
            assert follows_protocol(on, S)
            if follows_protocol(off, S):  # the argmax was always allowed: nothing to change
                assert [(e.text, e.special) for e in on[:-1]] == [(e.text, e.special) for e in off[:-1]]
        # a completion request is not constrained: the same sampled text with and without the grammar
        raw = [tok.encode("The quick brown fox")] * 2
        a = run_chat(eng, raw, SamplingParams(temperature=2.0, seed=7), False, set())
        b = run_chat(free, raw, SamplingParams(temperature=2.0, seed=7), False, set())
        assert [(e.text, e.special) for e in a[0][:-1]] == [(e.text, e.special) for e in b[0][:-1]]
    finally:
        eng.stop(drain=False, timeout=10)
        free.stop(drain=False, timeout=10)


def test_eager_decoder_masks_and_carries_states(tiny):
    """EagerDecoder with a grammar: each step's argmax is the masked argmax for that row's state,
    states advance on the device across step(None), and feed() advances from the last states."""
    from model.decode import EagerDecoder
    model, tok = tiny
    S = tok.special_tokens
    g = ProtocolGrammar(S, tok.vocab_size, model.config.vocab_size)
    cache = model.new_kv_cache(3)
    dec = EagerDecoder(model, cache, n_vocab=tok.vocab_size, grammar=g)
    prompts = [render_prompt([{"role": "user", "content": q}], tok) for q in ("Hi there!", "2 + 2", "abc")]
    with torch.no_grad():
        for r, p in enumerate(prompts):
            model(torch.tensor([p]), kv_cache=cache, rows=slice(r, r + 1))
        states = [STEP, THOUGHT, FREE]
        tokens = [prompts[0][-1], tok.encode(" I")[0], prompts[2][-1]]
        for _ in range(6):
            before = list(states)
            logits, ids = dec.step(tokens, states=states) if tokens else dec.step(None)
            assert dec.last_states.tolist() == before
            for r in range(3):
                allowed = g.allowed[before[r], :tok.vocab_size].nonzero().flatten()
                assert int(ids[0, r]) in allowed.tolist()
                states[r] = g.advance(before[r], int(ids[0, r]))
            assert dec.state.tolist() == states
            tokens = None
        picked = torch.tensor([S["<|answer|>"], S["<|action|>"], 5])
        dec.feed(picked)
        assert dec.state.tolist() == [g.advance(s, int(t)) for s, t in zip(states, picked)]


@pytest.mark.gpu
def test_cuda_graphs_follow_the_grammar_like_the_eager_decoder(tiny):
    """bf16 on the GPU: the graph decoder (05_gpu's greedy kernel reading the tables, states in the
    input buffer, several steps per graph) picks what the eager decoder picks under the grammar, and
    the engine's chat turns (graphs, overlap, sampled rows) follow the protocol."""
    from model.decode import EagerDecoder, GraphDecoder
    model, tok = tiny
    model = model.to("cuda", torch.bfloat16)
    S = tok.special_tokens
    g = ProtocolGrammar(S, tok.vocab_size, model.config.vocab_size, "cuda")
    prompts = [render_prompt([{"role": "user", "content": q}], tok) for q in ("Hi there!", "2 + 2", "abc")]
    runs = []
    for cls in (EagerDecoder, GraphDecoder):
        cache = model.new_kv_cache(4)
        kw = dict(multi_steps=4) if cls is GraphDecoder else {}
        dec = cls(model, cache, n_vocab=tok.vocab_size, grammar=g, **kw)
        with torch.no_grad():
            for r, p in enumerate(prompts):
                model(torch.tensor([p], device="cuda"), kv_cache=cache, rows=slice(r, r + 1))
            first = dec.step([p[-1] for p in prompts], states=[STEP, THOUGHT, ANSWER])[1].clone()
            more = dec.step(None, steps=4)[1].clone() if cls is GraphDecoder else torch.cat(
                [dec.step(None)[1].clone() for _ in range(4)])
            states = dec.last_states.clone()
        runs.append((first, more, states))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    stops = {S[s] for s in CHAT_STOP_TOKENS}
    eng = Engine(model, tok, max_batch=4).start(warmup=True)
    try:
        assert isinstance(eng.decoder, GraphDecoder)
        hot = [SamplingParams(temperature=2.0 if i % 2 else 0.0, seed=i) for i in range(12)]
        for p, s in zip(prompts * 4, hot):
            assert follows_protocol(run_chat(eng, [p], s, True, stops)[0], S)
    finally:
        eng.stop(drain=False, timeout=10)
