"""Decoding constrained to the chat protocol: which token may come next in an assistant turn.

DESIGN.md's assistant turn is a sequence of tool steps and then an answer:

    <|assistant|> ( [<|thought|> text] <|action|> text <|observation|> <tool writes> )* [<|thought|> text] <|answer|> text <|end|>

(a thought before the answer is what transformer.chat.render writes for an OpenAI message with
reasoning_content and content but no tool call). A model trained on it follows it nearly always, but a
small one sometimes does not: it writes `<|answer|>` inside an action (`lookup(capital of<|answer|>...`:
no tool call is ever made), ends a thought with `<|end|>`, or starts a turn with text. Here
the turn is a five-state machine over the token ids, and a decode step may only pick a token its row's
state allows (every other logit gets -inf before the argmax or the sampling draw). Text tokens never
change the state; special tokens move it:

    state    may emit                            moves to
    FREE     anything                            FREE  (no constraint: /v1/completions, /generate)
    STEP     <|thought|> <|action|> <|answer|>   THOUGHT / ACTION / ANSWER  (a turn or a step starts)
    THOUGHT  text, <|action|> <|answer|>         ACTION / ANSWER
    ACTION   text, <|observation|>               FREE  (the call is complete: the request stops there)
    ANSWER   text, <|end|>                       FREE  (the turn is over: the request stops there)

A chat prompt ends with `<|assistant|>` or with an observation, so a chat request starts in STEP.
The machine runs on the device as two tables indexed by (state, token): an additive `bias` (0 or
-inf) and `next_state`, so a row's state can live in the decode buffer next to its token id and CUDA
graphs replay it like any other input (05_gpu's greedy kernel reads both tables); the host keeps its
own copy of each row's state with `advance`, for the steps whose inputs it writes.
"""
from __future__ import annotations

import torch

FREE, STEP, THOUGHT, ACTION, ANSWER = range(5)
STATE_NAMES = ("FREE", "STEP", "THOUGHT", "ACTION", "ANSWER")
# state -> {special token that may come next: the state after it}; text is allowed in the last three
MOVES = {
    STEP: {"<|thought|>": THOUGHT, "<|action|>": ACTION, "<|answer|>": ANSWER},
    THOUGHT: {"<|action|>": ACTION, "<|answer|>": ANSWER},
    ACTION: {"<|observation|>": FREE},
    ANSWER: {"<|end|>": FREE},
}
TEXT_STATES = (THOUGHT, ACTION, ANSWER)
PROTOCOL_TOKENS = sorted({name for moves in MOVES.values() for name in moves})


class ProtocolGrammar:
    """The tables for a tokenizer's special tokens. n_vocab: ids the tokenizer can decode; width: the
    model's logits width (its vocabulary may be padded past n_vocab; those columns are never allowed
    outside FREE)."""

    @staticmethod
    def fits(special_tokens: dict[str, int]) -> bool:
        """Does a tokenizer have the protocol's special tokens?"""
        return all(name in special_tokens for name in PROTOCOL_TOKENS)

    def __init__(self, special_tokens: dict[str, int], n_vocab: int, width: int, device="cpu"):
        if not self.fits(special_tokens):
            missing = [name for name in PROTOCOL_TOKENS if name not in special_tokens]
            raise ValueError(f"the tokenizer lacks the protocol's special tokens {missing}")
        if not 0 < n_vocab <= width:
            raise ValueError(f"need 0 < n_vocab <= width, got {n_vocab} and {width}")
        specials = torch.tensor(sorted(i for i in special_tokens.values() if i < width), dtype=torch.long)
        allowed = torch.zeros(len(STATE_NAMES), width, dtype=torch.bool)
        allowed[FREE] = True
        nxt = torch.arange(len(STATE_NAMES))[:, None].repeat(1, width)  # text keeps the state
        self.moves: list[dict[int, int]] = [{} for _ in STATE_NAMES]  # host copy: token id -> next state
        for state, moves in MOVES.items():
            if state in TEXT_STATES:
                allowed[state, :n_vocab] = True
                allowed[state, specials] = False
            for name, after in moves.items():
                tid = special_tokens[name]
                allowed[state, tid] = True
                nxt[state, tid] = after
                self.moves[state][tid] = after
        self.allowed = allowed
        self.bias = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")).to(device)  # (S, width)
        self.next_state = nxt.to(torch.int32).to(device)  # (S, width)

    def advance(self, state: int, token: int) -> int:
        """The host's transition: the state after `token` (a token the state allows)."""
        return self.moves[state].get(token, state)

    def mask(self, logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """logits (n, width) + each row's state's bias -> (n, width); disallowed tokens at -inf."""
        return logits.float() + self.bias[states]

    def step(self, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The device's transition: (n,) states and the (n,) tokens just picked -> the next states."""
        return self.next_state[states, ids].to(states.dtype)
