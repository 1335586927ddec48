"""The greedy pick of a decode step, and the next step's inputs, in two small kernels.

    ids = greedy_next(logits, n_vocab, inputs=None, max_pos=0)
        logits (B, V); the argmax over the first n_vocab columns of each row -> ids (B,) int64, the
        first index on ties (as torch.argmax). With inputs, 03_model's decode buffer (2, >= B) int64
        (row 0 token ids, row 1 positions), it also writes ids into inputs[0] and advances inputs[1]
        by one, capped at max_pos: the next decode step's inputs, so it can start with no host copy.
    ids = greedy_next(logits, n_vocab, inputs, max_pos, bias, next_state)
        decoding constrained by a state machine (03_model/grammar.py): inputs has a third row, each
        row's state; the argmax is over logits + bias[state] (bias (S, V) float32, 0 or -inf), and
        the state after the picked id, next_state[state, id] (int32 (S, V)), goes into inputs[2].

Why: at GPT-2's vocabulary torch.argmax reduces each 50k-column row in one block of threads (14 us
on the H100 at batch 1, one SM streaming 100 KB), and writing the next inputs (a copy, an add and a
clamp) is three more kernels. Here the row is split over SPLITS programs, each keeping a running
max and its index per lane (a strict > keeps a lane's first index), then reducing its lanes (the
smallest index among equal maxima); a second kernel, one program per row, combines the SPLITS
partial results the same way and writes ids and the next inputs. Both are launched with
programmatic dependent launch (triton_util.PDL), so they join the decode kernels' chain. NaN logits
are never picked (torch would pick them); a row of -inf picks column 0, as torch does.
"""
import torch

from gpu.triton_util import PDL_LAUNCH, check_device, release_dependents, wait_for_inputs

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

SPLITS = 32  # programs per row in the first stage
BLOCK = 1024


@triton.jit
def _partial_kernel(LOGITS, PART_V, PART_I, STATE, BIAS, stride_l, stride_b, n_vocab, per_split,
                    HAS_GRAMMAR: tl.constexpr, SPLITS: tl.constexpr, BLOCK: tl.constexpr):
    release_dependents()  # (under PDL) the combine kernel may launch now
    row, split = tl.program_id(0).to(tl.int64), tl.program_id(1)
    lo = split * per_split
    hi = tl.minimum(lo + per_split, n_vocab)
    offs = tl.arange(0, BLOCK)
    best_v = tl.full([BLOCK], float("-inf"), tl.float32)
    best_i = tl.full([BLOCK], 2147483647, tl.int32)
    wait_for_inputs()  # the logits come from the kernel before
    if HAS_GRAMMAR:
        bias_row = BIAS + tl.load(STATE + row) * stride_b
    for start in range(lo, hi, BLOCK):
        cols = start + offs
        x = tl.load(LOGITS + row * stride_l + cols, mask=cols < hi, other=float("-inf")).to(tl.float32)
        if HAS_GRAMMAR:
            x += tl.load(bias_row + cols, mask=cols < hi, other=float("-inf"))
        take = (x > best_v) | ((best_i == 2147483647) & (cols < hi))  # a lane's first column counts too
        best_v = tl.where(take, x, best_v)
        best_i = tl.where(take, cols, best_i)
    m = tl.max(best_v, axis=0)
    i = tl.min(tl.where(best_v == m, best_i, 2147483647), axis=0)
    tl.store(PART_V + row * SPLITS + split, m)
    tl.store(PART_I + row * SPLITS + split, i)


@triton.jit
def _combine_kernel(PART_V, PART_I, IDS, TOKENS, POS, STATE, NEXT, stride_n, max_pos, HAS_INPUTS: tl.constexpr,
                    HAS_GRAMMAR: tl.constexpr, SPLITS: tl.constexpr):
    release_dependents()
    row = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, SPLITS)
    wait_for_inputs()
    v = tl.load(PART_V + row * SPLITS + s)
    i = tl.load(PART_I + row * SPLITS + s)
    best = tl.min(tl.where(v == tl.max(v, axis=0), i, 2147483647), axis=0).to(tl.int64)
    tl.store(IDS + row, best)
    if HAS_INPUTS:
        tl.store(TOKENS + row, best)
        tl.store(POS + row, tl.minimum(tl.load(POS + row) + 1, max_pos))
    if HAS_GRAMMAR:  # (the partial kernels have finished reading the state: wait_for_inputs above)
        state = tl.load(STATE + row)
        tl.store(STATE + row, tl.load(NEXT + state * stride_n + best).to(tl.int64))


def greedy_next(logits: torch.Tensor, n_vocab: int, inputs: torch.Tensor | None = None,
                max_pos: int = 0, bias: torch.Tensor | None = None,
                next_state: torch.Tensor | None = None) -> torch.Tensor:
    """Argmax of each row's first n_vocab logits -> (B,) int64; with inputs, also the next step's
    inputs; with bias and next_state, constrained by the states in inputs[2] (see the docstring)."""
    if logits.dim() != 2 or not 0 < n_vocab <= logits.size(1):
        raise ValueError(f"need logits (B, V) and 0 < n_vocab <= V, got {tuple(logits.shape)} and {n_vocab}")
    B = logits.size(0)
    grammar = bias is not None
    rows = 3 if grammar else 2
    if inputs is not None and (inputs.dim() != 2 or inputs.size(0) != rows or inputs.size(1) < B
                               or inputs.dtype != torch.int64 or inputs.stride(1) != 1):
        raise ValueError(f"inputs must be a ({rows}, >= {B}) int64 buffer with contiguous rows, got "
                         f"{tuple(inputs.shape)} {inputs.dtype}")
    if grammar and (inputs is None or next_state is None or bias.dim() != 2 or bias.shape != next_state.shape
                    or bias.size(1) < n_vocab or bias.dtype != torch.float32 or next_state.dtype != torch.int32
                    or bias.stride(1) != 1 or next_state.stride(1) != 1):
        raise ValueError("constrained decoding needs inputs with a state row, and bias (S, >= n_vocab) float32 "
                         "and next_state of the same shape int32, both with contiguous rows")
    check_device(logits, *([inputs] if inputs is not None else []), *([bias, next_state] if grammar else []))
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    ids = torch.empty(B, device=logits.device, dtype=torch.int64)
    if B == 0:
        return ids
    part_v = torch.empty(B, SPLITS, device=logits.device, dtype=torch.float32)
    part_i = torch.empty(B, SPLITS, device=logits.device, dtype=torch.int32)
    per_split = triton.cdiv(n_vocab, SPLITS)
    state, bias, next_state = (inputs[2], bias, next_state) if grammar else (ids, part_v, part_i)  # unused if not
    _partial_kernel[(B, SPLITS)](logits, part_v, part_i, state, bias, logits.stride(0), bias.stride(0), n_vocab,
                                 per_split, HAS_GRAMMAR=grammar, SPLITS=SPLITS, BLOCK=BLOCK, num_warps=4, **PDL_LAUNCH)
    tokens, pos = (inputs[0], inputs[1]) if inputs is not None else (ids, ids)
    _combine_kernel[(B,)](part_v, part_i, ids, tokens, pos, state, next_state, next_state.stride(0), max_pos,
                          HAS_INPUTS=inputs is not None, HAS_GRAMMAR=grammar, SPLITS=SPLITS, num_warps=1,
                          **PDL_LAUNCH)
    return ids
