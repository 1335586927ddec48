"""SFT rendering: token ids and loss mask, token by token, and how the trainer turns them into
inputs / targets / padded batches."""
import pytest
import torch

from sft.trainer import Batches, encode
from transformer import IGNORE_INDEX
from transformer.chat import past_turns_as_answers, render
from transformer.tokenizer import Tokenizer

TOOL_CONV = [
    {"role": "user", "content": "What is 1234 plus 5678?"},
    {"role": "assistant", "content": None, "reasoning_content": "I need to compute 1234 + 5678.",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "calc", "arguments": '{"expression": "1234 + 5678"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "6912"},
    {"role": "assistant", "content": "1234 + 5678 = 6912."},
]
CHAT_CONV = [{"role": "user", "content": "How are you today?"},
             {"role": "assistant", "content": "I'm doing well, thank you!"}]


@pytest.fixture(scope="module")
def tok():
    text = " ".join(m.get("content") or "" for m in TOOL_CONV + CHAT_CONV) * 3
    return Tokenizer.train(text, 300)


def pieces(tok, ids, mask):
    return [(tok.decode([i]), m) for i, m in zip(ids, mask)]


def test_tool_conversation_mask_token_by_token(tok):
    ids, mask = render(TOOL_CONV, tok)
    S = tok.special_tokens
    enc = lambda s: tok.encode(s)
    expected = ([S["<|user|>"], *enc("What is 1234 plus 5678?"), S["<|end|>"], S["<|assistant|>"]],
                [S["<|thought|>"], *enc("I need to compute 1234 + 5678."), S["<|action|>"], *enc("calc(1234 + 5678)"),
                 S["<|observation|>"]],
                enc("6912"),
                [S["<|answer|>"], *enc("1234 + 5678 = 6912."), S["<|end|>"]])
    want_ids = [i for part in expected for i in part]
    want_mask = [0] * len(expected[0]) + [1] * len(expected[1]) + [0] * len(expected[2]) + [1] * len(expected[3])
    assert ids == want_ids
    assert mask == want_mask, pieces(tok, ids, mask)
    # the observation token itself is learned, the tool's text after it is not
    obs = ids.index(S["<|observation|>"])
    assert mask[obs] == 1 and tok.decode(ids[obs + 1:obs + 1 + len(enc("6912"))]) == "6912"
    assert all(m == 0 for m in mask[obs + 1:obs + 1 + len(enc("6912"))])
    assert mask[ids.index(S["<|assistant|>"])] == 0  # the prompt ends with <|assistant|>: given, not learned


def test_tool_free_turn_goes_straight_to_answer(tok):
    ids, mask = render(CHAT_CONV, tok)
    S = tok.special_tokens
    a = ids.index(S["<|assistant|>"])
    assert ids[a + 1] == S["<|answer|>"] and ids[-1] == S["<|end|>"]
    assert S["<|thought|>"] not in ids and S["<|action|>"] not in ids
    assert mask == [0] * (a + 1) + [1] * (len(ids) - a - 1)


def test_weight_zero_answers_are_context_not_lessons(tok):
    """An assistant message with "weight": 0 renders the same tokens, all with mask 0; the rest keep theirs."""
    past = [{**CHAT_CONV[0]}, {**CHAT_CONV[1], "weight": 0}]
    ids, mask = render(past + TOOL_CONV, tok)
    plain_ids, plain_mask = render(CHAT_CONV + TOOL_CONV, tok)
    assert ids == plain_ids
    n = len(render(CHAT_CONV, tok)[0])
    assert mask[:n] == [0] * n and sum(plain_mask[:n]) > 0
    assert mask[n:] == plain_mask[n:] == render(TOOL_CONV, tok)[1]


def test_past_turns_keep_question_and_answer_only():
    """Earlier turns lose their thoughts, actions and observations; the current turn (from the last
    user message on) and system messages are kept whole; the input list is not changed."""
    system = {"role": "system", "content": "Be brief."}
    follow = [{"role": "user", "content": "And times 2?"}, *TOOL_CONV[1:3]]
    convo = [system, *TOOL_CONV, *CHAT_CONV, *follow]
    before = [dict(m) for m in convo]
    out = past_turns_as_answers(convo)
    assert out == [system, TOOL_CONV[0], {"role": "assistant", "content": "1234 + 5678 = 6912."}, *CHAT_CONV, *follow]
    assert convo == before
    assert past_turns_as_answers(TOOL_CONV) == TOOL_CONV  # one turn: nothing is past
    assert past_turns_as_answers([system]) == [system]


def test_encode_shifts_targets_and_ignores_unlearned_tokens(tok):
    (x, y), = encode([{"messages": TOOL_CONV}], tok, block_size=256)[0]
    ids, mask = render(TOOL_CONV, tok)
    assert x == ids[:-1] and len(y) == len(x)
    for t in range(len(x)):
        assert y[t] == (ids[t + 1] if mask[t + 1] else IGNORE_INDEX)
    S = tok.special_tokens
    # predicting <|observation|> is trained, predicting the tool's text is not
    obs = ids.index(S["<|observation|>"])
    assert y[obs - 1] == S["<|observation|>"] and y[obs] == IGNORE_INDEX


def test_too_long_conversations_are_dropped_and_counted(tok):
    n = len(render(TOOL_CONV, tok)[0])
    examples, dropped = encode([{"messages": TOOL_CONV}, {"messages": CHAT_CONV}], tok, block_size=n - 2)
    assert dropped == 1 and len(examples) == 1
    examples, dropped = encode([{"messages": TOOL_CONV}], tok, block_size=n - 1)  # n tokens = n-1 inputs: fits
    assert dropped == 0 and len(examples) == 1


def test_batches_pad_with_endoftext_and_ignore(tok):
    examples, _ = encode([{"messages": TOOL_CONV}, {"messages": CHAT_CONV}], tok, block_size=256)
    pad = tok.special_tokens["<|endoftext|>"]
    b = Batches(examples, batch_size=2, seed=0, pad_id=pad)
    x, y = b.get(0)
    short = min(range(2), key=lambda r: len(examples[r][0]))
    n_short, T = len(examples[short][0]), max(len(e[0]) for e in examples)
    assert x.shape == y.shape == (2, T)
    row = [r for r in range(2) if int((x[r] == pad).sum()) == T - n_short][0]
    assert torch.all(x[row, n_short:] == pad) and torch.all(y[row, n_short:] == IGNORE_INDEX)
    assert b.get(0)[0].tolist() == x.tolist()  # a pure function of the step
    assert len(b) == 1 and sorted(b.get(1)[0][:, 0].tolist()) == sorted(x[:, 0].tolist())  # next epoch: same rows
