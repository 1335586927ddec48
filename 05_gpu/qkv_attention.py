"""The first half of an attention block for a few decoding rows in ONE kernel: LayerNorm, the fused
q/k/v projection, the cache write and the attention itself.

    y = qkv_attention(x, weight, bias, norm, k_cache, v_cache, pos, n_head)
        x (B, C) the residual stream, weight (3C, C) / bias (3C,) c_attn's, norm = (g, b, eps) ln_1's,
        k_cache / v_cache (B, H, L, D) one layer's cache rows, pos (B,) the new token's positions
        -> y (B, C) = softmax(q k^T / sqrt(D)) v over keys 0..pos, heads side by side (c_proj's input)

Why: at batch 1 a decode step is a chain of dependent kernels, and each link costs a few
microseconds of latency (the next one waits for the whole grid of the one before, then reloads its
inputs) whatever its size. small_linear + decode_attention are two links; this is one, and its
attention is split over many programs, where decode_attention streams a head's whole cache in one
(at 1000 cached keys that took ~15 us a layer). The kernel's programs have two roles:

- TILES (program ids 0 .. 3C/BLOCK_N - 1): small_linear's tile, BLOCK_N of the 3C outputs, put where
  they go: q into a small buffer, k and v straight into the cache at pos. Then the tile counts
  itself in on its head's `ready` counter (an atomic add that publishes its stores).
- WORKERS (the next H * SPLITS ids): worker (h, s) waits until head h's counter says all 3D/BLOCK_N
  of its tiles are in, then runs the online softmax over the s-th of SPLITS slices of each row's
  keys 0..pos (a slice is at least BLOCK_T keys: short rows need fewer workers, and the idle ones
  neither wait nor read) and stores the slice's (max, sum, weighted values). The worker that
  finishes LAST for its head (a second counter) merges the slices into y and resets both counters.

A worker waits on tiles of its own kernel, which is safe because tiles never wait on anything: the
workers have the highest program ids, so they are placed after the tiles (Triton's interpreter runs
programs in id order: there the tiles are all done when a worker starts), and the few workers
(H * SPLITS, ~100) could not fill the GPU and keep a tile from running even if placed first.

A scalar atomic's result reaches the program's threads through shared memory, so the worker puts
a barrier between reading it and anything that may reuse that memory: without it some threads of
the head's last worker skipped the merge on the H100 (wrong attention, and NaN that later crashed
the embedding's lookup).

Counters live in a buffer kept per device and are back at zero after every call, so calls on one
device must not run concurrently on two streams (the engine's decode steps are one stream). Results
equal small_linear followed by decode_attention up to the order of the softmax's sums: the same
rounding of q, k and v (to the weights' dtype, and k, v to the cache's).
"""
import torch

from gpu.decode_attention import attend
from gpu.small_linear import MAX_NORM_K, MAX_ROWS, _config, linear_tile
from gpu.triton_util import PDL_LAUNCH, check_device, release_dependents, wait_for_inputs

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

_counters: dict[torch.device, torch.Tensor] = {}
MAX_HEADS = 256
MAX_SPLITS = 8
# keys per loop step of a worker: the kernel's registers are sized for its largest role, and 64 keys
# (with the next block in flight) took 255 registers a thread where the tiles need ~150, so fewer
# tiles fit on an SM (12 layers at position 160 on the H100: 233 us at 32 keys, 252 us at 64)
KEYS_PER_ITER = 32


@triton.jit
def _tile(X, W, BIAS, G, BETA, Q, K, V, POS, READY, B, C, stride_x, stride_w, stride_kb, stride_kh, stride_kt,
          stride_vb, stride_vh, stride_vt, eps, pid, HAS_BIAS: tl.constexpr, HAS_NORM_BIAS: tl.constexpr,
          D: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """BLOCK_N of the 3C qkv outputs for all rows, stored where they go; then count in on the head."""
    first = pid * BLOCK_N  # first of this tile's qkv columns; all in one head of q, k or v
    n = first + tl.arange(0, BLOCK_N)
    rows = tl.arange(0, BLOCK_B)
    acc = linear_tile(X, W, BIAS, G, BETA, B, 3 * C, C, stride_x, stride_w, eps, rows, n,
                      HAS_BIAS, True, HAS_NORM_BIAS, BLOCK_K)  # (BLOCK_B, BLOCK_N)
    part = first // C  # 0 q, 1 k, 2 v
    h = (first - part * C) // D
    d = n - part * C - h * D  # (BLOCK_N,) columns within the head
    row_ok = (rows < B)[:, None]
    pos = tl.load(POS + rows, mask=rows < B, other=0).to(tl.int64)[:, None]  # (BLOCK_B, 1)
    if part == 0:
        tl.store(Q + rows[:, None] * C + h * D + d[None, :], acc.to(Q.dtype.element_ty), mask=row_ok)
    elif part == 1:
        tl.store(K + rows[:, None] * stride_kb + h * stride_kh + pos * stride_kt + d[None, :],
                 acc.to(K.dtype.element_ty), mask=row_ok)
    else:
        tl.store(V + rows[:, None] * stride_vb + h * stride_vh + pos * stride_vt + d[None, :],
                 acc.to(V.dtype.element_ty), mask=row_ok)
    tl.debug_barrier()  # all of this program's stores happen before its arrival below
    tl.atomic_add(READY + h, 1, sem="release", scope="gpu")


@triton.jit
def _worker(Q, K, V, POS, Y, READY, DONE, PART_M, PART_L, PART_O, B, C, stride_kb, stride_kh, stride_kt,
            stride_vb, stride_vh, stride_vt, stride_y, sm_scale, w, H: tl.constexpr, D: tl.constexpr,
            SPLITS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Slice s of head h's keys for every row, once the head's tiles are in; the head's last worker
    merges the slices into y and resets the head's counters."""
    h, s = w // SPLITS, w % SPLITS
    wait_for_inputs()  # (the cache's older keys were written by earlier kernels)
    # a slice is at least one block of keys, so short rows use fewer workers; a worker with no keys
    # in any row neither waits nor reads (worker 0 always has keys: it is the one that waits)
    busy = s == 0
    for b in range(0, B):
        keys = tl.load(POS + b).to(tl.int32) + 1
        busy = busy | (s * tl.maximum(tl.cdiv(keys, SPLITS), BLOCK_T) < keys)
    if busy:
        while tl.load(READY + h, volatile=True) < 3 * (D // BLOCK_N):  # spin until all the head's tiles are in
            pass
        tl.atomic_add(READY + h, 0, sem="acquire", scope="gpu")  # and see what they stored
        tl.debug_barrier()
    d = tl.arange(0, D)
    for b in range(0, B):
        keys = tl.load(POS + b).to(tl.int32) + 1  # keys 0..pos, the new one included
        chunk = tl.maximum(tl.cdiv(keys, SPLITS), BLOCK_T)
        lo = s * chunk
        q = tl.load(Q + b * C + h * D + d, cache_modifier=".cg").to(tl.float32) * sm_scale
        m, l, o = attend(q, K + b * stride_kb + h * stride_kh + lo * stride_kt,
                         V + b * stride_vb + h * stride_vh + lo * stride_vt,
                         tl.maximum(tl.minimum(chunk, keys - lo), 0), stride_kt, stride_vt,
                         tl.full([], float("-inf"), tl.float32), tl.full([], 0.0, tl.float32),
                         tl.zeros([D], tl.float32), D, BLOCK_T)
        slot = (b * H + h) * SPLITS + s
        tl.store(PART_M + slot, m)
        tl.store(PART_L + slot, l)
        tl.store(PART_O + slot * D + d, o)
    tl.debug_barrier()
    last = tl.atomic_add(DONE + h, 1, sem="acq_rel", scope="gpu") == SPLITS - 1  # the head's last worker?
    # every thread has its copy of the atomic's result (passed through shared memory) before any
    # thread goes on to code that may reuse that shared memory
    tl.debug_barrier()
    if last:
        sl = tl.arange(0, SPLITS)
        for b in range(0, B):
            slots = (b * H + h) * SPLITS + sl
            m = tl.load(PART_M + slots, cache_modifier=".cg")
            scale = tl.exp(m - tl.max(m, axis=0))  # an empty slice has m = -inf: weight 0
            l = tl.sum(tl.load(PART_L + slots, cache_modifier=".cg") * scale, axis=0)
            o = tl.sum(tl.load(PART_O + slots[:, None] * D + d[None, :], cache_modifier=".cg") * scale[:, None],
                       axis=0)
            tl.store(Y + b * stride_y + h * D + d, (o / l).to(Y.dtype.element_ty))
        tl.atomic_xchg(READY + h, 0, sem="relaxed", scope="gpu")  # every tile and worker of h is past it
        tl.atomic_xchg(DONE + h, 0, sem="relaxed", scope="gpu")


@triton.jit
def _qkv_attention_kernel(X, W, BIAS, G, BETA, Q, K, V, POS, Y, READY, DONE, PART_M, PART_L, PART_O,
                          B, C, stride_x, stride_w, stride_kb, stride_kh, stride_kt, stride_vb, stride_vh,
                          stride_vt, stride_y, eps, sm_scale, HAS_BIAS: tl.constexpr,
                          HAS_NORM_BIAS: tl.constexpr, H: tl.constexpr, D: tl.constexpr, SPLITS: tl.constexpr,
                          BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_T: tl.constexpr):
    release_dependents()  # the next kernel may start loading its weights now (under PDL)
    pid = tl.program_id(0)
    tiles = 3 * C // BLOCK_N
    if pid < tiles:
        _tile(X, W, BIAS, G, BETA, Q, K, V, POS, READY, B, C, stride_x, stride_w, stride_kb, stride_kh, stride_kt,
              stride_vb, stride_vh, stride_vt, eps, pid, HAS_BIAS, HAS_NORM_BIAS, D, BLOCK_B, BLOCK_N, BLOCK_K)
    else:
        _worker(Q, K, V, POS, Y, READY, DONE, PART_M, PART_L, PART_O, B, C, stride_kb, stride_kh, stride_kt,
                stride_vb, stride_vh, stride_vt, stride_y, sm_scale, pid - tiles, H, D, SPLITS, BLOCK_N, BLOCK_T)


def _head_counters(device: torch.device) -> torch.Tensor:
    """The per-device zeroed counters, (ready, done) per head (made on first use, outside any CUDA
    graph capture in practice: the engine's decoder runs a step eagerly before it captures one)."""
    if device not in _counters:
        _counters[device] = torch.zeros(2, MAX_HEADS, dtype=torch.int32, device=device)
    return _counters[device]


def default_splits(max_len: int) -> int:
    """Key slices per head: about one per 128 cache positions, a power of two up to MAX_SPLITS."""
    return min(MAX_SPLITS, triton.next_power_of_2(max(1, max_len // 128)))


def qkv_attention(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  norm: tuple[torch.Tensor, torch.Tensor | None, float], k_cache: torch.Tensor,
                  v_cache: torch.Tensor, pos: torch.Tensor, n_head: int, splits: int | None = None) -> torch.Tensor:
    """LayerNorm -> qkv -> cache write at pos -> attention over keys 0..pos, for x (B <= MAX_ROWS, C);
    `splits` key slices per head (default_splits of the cache's length)."""
    B, C = x.shape
    g, beta, eps = norm
    if not 0 < B <= MAX_ROWS:
        raise ValueError(f"qkv_attention takes 1 to {MAX_ROWS} rows, got {B}")
    if weight.shape != (3 * C, C) or (bias is not None and bias.shape != (3 * C,)) or g.shape != (C,) \
            or (beta is not None and beta.shape != (C,)):
        raise ValueError(f"need weight (3C, C) = ({3 * C}, {C}), bias (3C,) and norm weights (C,), got "
                         f"{tuple(weight.shape)}")
    if C % n_head or not 0 < n_head <= MAX_HEADS:
        raise ValueError(f"n_embd {C} must split into 1..{MAX_HEADS} heads, got {n_head}")
    D = C // n_head
    if D & (D - 1) or D < 4:
        raise ValueError(f"head size {D} must be a power of two >= 4")
    if C > MAX_NORM_K:
        raise ValueError(f"a fused LayerNorm needs C <= {MAX_NORM_K}, got {C}")
    if k_cache.shape != v_cache.shape or tuple(k_cache.shape[:2]) != (B, n_head) or k_cache.size(3) != D \
            or k_cache.stride(3) != 1 or v_cache.stride(3) != 1:
        raise ValueError(f"caches must be (B={B}, H={n_head}, L, D={D}) with a contiguous last dimension, got "
                         f"{tuple(k_cache.shape)} and {tuple(v_cache.shape)}")
    if pos.shape != (B,):
        raise ValueError(f"pos must be ({B},), got {tuple(pos.shape)}")
    check_device(*[t for t in (x, weight, bias, g, beta, k_cache, v_cache, pos) if t is not None])
    x, weight = (t if t.stride(1) == 1 else t.contiguous() for t in (x, weight))
    pos = pos.contiguous()
    S = splits or default_splits(k_cache.size(2))
    if S & (S - 1) or not 0 < S <= MAX_SPLITS:
        raise ValueError(f"splits must be a power of two up to {MAX_SPLITS}, got {S}")
    BLOCK_B, BLOCK_N, _, warps = _config(B, C)
    q = torch.empty(B, C, device=x.device, dtype=weight.dtype)
    y = torch.empty(B, C, device=x.device, dtype=weight.dtype)
    part_m, part_l = (torch.empty(B * n_head * S, device=x.device, dtype=torch.float32) for _ in range(2))
    part_o = torch.empty(B * n_head * S, D, device=x.device, dtype=torch.float32)
    ready, done = _head_counters(x.device)
    _qkv_attention_kernel[(3 * C // BLOCK_N + n_head * S,)](
        x, weight, bias if bias is not None else weight, g, beta if beta is not None else g, q, k_cache, v_cache,
        pos, y, ready, done, part_m, part_l, part_o, B, C, x.stride(0), weight.stride(0), *k_cache.stride()[:3],
        *v_cache.stride()[:3], y.stride(0), eps, D ** -0.5, HAS_BIAS=bias is not None,
        HAS_NORM_BIAS=beta is not None, H=n_head, D=D, SPLITS=S, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N,
        BLOCK_K=triton.next_power_of_2(C), BLOCK_T=KEYS_PER_ITER, num_warps=warps, **PDL_LAUNCH)
    return y
