"""05_gpu's decode kernels (fused cache write + attention, the fused LayerNorm + qkv + attention,
fused residual add + LayerNorm, small_linear, the embedding, greedy_next) against PyTorch, in
Triton's interpreter on the CPU; and the model's one-token cache step on them
(GPTConfig.decode_kernels) against its plain PyTorch path."""
import pytest
import torch
import torch.nn.functional as F

from gpu.decode_attention import decode_attention
from gpu.embedding import embed
from gpu.greedy import SPLITS, greedy_next
from gpu.layer_norm import add_layer_norm
from gpu.qkv_attention import _head_counters, qkv_attention
from gpu.small_linear import MAX_ROWS, small_linear
from transformer import GPT, GPTConfig


def reference_decode(qkv, k_cache, v_cache, pos, n_head):
    """Write k, v at pos, then plain attention of q over keys 0..pos, row by row."""
    B, C = qkv.size(0), qkv.size(1) // 3
    q, k, v = (t.view(B, n_head, C // n_head) for t in qkv.split(C, dim=1))
    ys = []
    for b in range(B):
        p = int(pos[b])
        k_cache[b, :, p], v_cache[b, :, p] = k[b], v[b]
        ys.append(F.scaled_dot_product_attention(q[b, :, None], k_cache[b, :, :p + 1], v_cache[b, :, :p + 1]))
    return torch.stack(ys).reshape(B, C)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_attention_matches_reference(dtype):
    torch.manual_seed(0)
    L, H, D = 150, 3, 16  # rows longer than one 64-key block, and one on a block edge
    pos = torch.tensor([0, 1, 63, 64, 130, L - 1])
    B = len(pos)
    qkv = torch.randn(B, 3 * H * D, dtype=dtype)
    cache = torch.randn(2, B + 2, H, L, D, dtype=dtype)  # the kernel gets row views, as from KVCache
    ours_k, ours_v = cache[0, 1:B + 1].clone(), cache[1, 1:B + 1].clone()
    ref_k, ref_v = ours_k.float(), ours_v.float()  # copies, the reference in fp32
    y = decode_attention(qkv, ours_k, ours_v, pos, H)
    ref = reference_decode(qkv.float(), ref_k, ref_v, pos, H)
    assert y.dtype == dtype and y.shape == (B, H * D)
    torch.testing.assert_close(y.float(), ref, atol=1e-5 if dtype == torch.float32 else 2e-2, rtol=1e-4)
    assert torch.equal(ours_k.float(), ref_k) and torch.equal(ours_v.float(), ref_v)


def test_decode_attention_writes_through_a_cache_view():
    """k_cache/v_cache are views of the model's (n_layer, B, H, L, D) cache: the write must land there."""
    torch.manual_seed(1)
    cache = torch.zeros(2, 2, 4, 2, 10, 8)  # (k|v, layer, rows, H, L, D)
    qkv = torch.randn(2, 3 * 16)
    decode_attention(qkv, cache[0, 1, 2:4], cache[1, 1, 2:4], torch.tensor([3, 5]), 2)
    k_new = qkv[:, 16:32].view(2, 2, 8)
    assert torch.equal(cache[0, 1, 2, :, 3], k_new[0]) and torch.equal(cache[0, 1, 3, :, 5], k_new[1])
    assert cache[0, 0].abs().sum() == 0 and cache[0, 1, :2].abs().sum() == 0  # nothing else touched


def test_decode_attention_rejects_bad_shapes():
    k = torch.zeros(2, 2, 10, 8)
    with pytest.raises(ValueError, match="pos must be"):
        decode_attention(torch.zeros(2, 48), k, k.clone(), torch.tensor([1]), 2)
    with pytest.raises(ValueError, match="caches must be"):
        decode_attention(torch.zeros(2, 48), k, k.clone(), torch.tensor([1, 2]), 4)
    with pytest.raises(ValueError, match="power of two"):
        decode_attention(torch.zeros(2, 36), torch.zeros(2, 2, 10, 6), torch.zeros(2, 2, 10, 6),
                         torch.tensor([1, 2]), 2)


@pytest.mark.parametrize("C, bias", [(64, True), (100, False), (768, True)])
def test_add_layer_norm_matches_torch(C, bias):
    torch.manual_seed(C)
    x, r = torch.randn(5, C) * 3, torch.randn(5, C)
    w, b = torch.randn(C), (torch.randn(C) if bias else None)
    s, h = add_layer_norm(x, r, w, b)
    torch.testing.assert_close(s, x + r, atol=0, rtol=0)
    torch.testing.assert_close(h, F.layer_norm(x + r, (C,), w, b), atol=2e-5, rtol=1e-5)


def test_add_layer_norm_bf16_within_one_rounding():
    """bf16 in and out: the sum is rounded once to bf16 (the interpreter truncates where the GPU rounds
    to nearest, so allow one bf16 step), then normalised in fp32."""
    torch.manual_seed(0)
    x, r, w, b = (torch.randn(*s).bfloat16() for s in ((4, 96), (4, 96), (96,), (96,)))
    s, h = add_layer_norm(x, r, w, b)
    assert s.dtype == h.dtype == torch.bfloat16
    torch.testing.assert_close(s.float(), (x + r).float(), atol=0.07, rtol=1 / 128)
    torch.testing.assert_close(h.float(), F.layer_norm((x + r).float(), (96,), w.float(), b.float()),
                               atol=0.07, rtol=1 / 64)


def decode_both_ways(cfg: GPTConfig, device: str, dtype: torch.dtype, prompt_lens: tuple, tokens: tuple,
                     tol: float) -> None:
    """Prefill rows of different lengths, then one-token steps for all rows, once on PyTorch ops and
    once on the decode kernels: the logits and every key/value written must agree within tol."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device, dtype).eval()
    prompts = [torch.randint(0, cfg.vocab_size, (1, n), device=device) for n in prompt_lens]
    results = {}
    for mode in ("torch", "triton"):
        model.config.decode_kernels = mode
        cache = model.new_kv_cache(len(prompts))
        with torch.no_grad():
            for r, p in enumerate(prompts):
                model(p, kv_cache=cache, rows=slice(r, r + 1))
            steps = [model(torch.tensor([[t + r] for r in range(len(prompts))], device=device), kv_cache=cache)[0]
                     for t in tokens]
        results[mode] = (torch.cat(steps, 1).float(), cache)
    (a, ca), (b, cb) = results["torch"], results["triton"]
    assert b.shape == (len(prompts), len(tokens), cfg.vocab_size)
    torch.testing.assert_close(b, a, atol=tol, rtol=tol)
    assert torch.equal(ca.lengths, cb.lengths)
    for r, n in enumerate(ca.lengths.tolist()):
        for x, y in ((cb.k, ca.k), (cb.v, ca.v)):
            torch.testing.assert_close(x[:, r, :, :n].float(), y[:, r, :, :n].float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("prompt_lens", [(70,), (5, 70, 1), (5, 70, 1, 9, 2, 33, 12, 64, 3, 20)])
@pytest.mark.parametrize("bias", [True, False])
def test_model_decode_step_on_kernels_equals_torch_path(prompt_lens, bias):
    """fp32 in the interpreter: the fused path gives the plain path's logits and cache writes, at 1 row
    (the head on small_linear too), 3 rows (qkv_attention, small_linear) and 10 rows > MAX_ROWS (cuBLAS
    + add_layer_norm + decode_attention)."""
    decode_both_ways(GPTConfig(block_size=96, vocab_size=97, n_layer=2, n_head=2, n_embd=32, bias=bias), "cpu",
                     torch.float32, prompt_lens=prompt_lens, tokens=(3, 9, 40), tol=1e-5)


@pytest.mark.parametrize("B, K, N", [(1, 96, 200), (3, 64, 33), (MAX_ROWS, 300, 70)])
@pytest.mark.parametrize("norm, norm_bias, gelu, residual, bias",
                         [(True, True, True, False, True), (False, False, False, True, True),
                          (True, False, False, False, False), (False, False, False, False, False)])
def test_small_linear_matches_torch(B, K, N, norm, norm_bias, gelu, residual, bias):
    torch.manual_seed(B * K + N)
    x, w = torch.randn(B, K), torch.randn(N, K) * 0.1
    b, g, beta, r = torch.randn(N), torch.randn(K), torch.randn(K), torch.randn(B, N)
    ref = F.layer_norm(x, (K,), g, beta if norm_bias else None) if norm else x
    ref = F.linear(ref, w, b if bias else None)
    ref = F.gelu(ref, approximate="tanh") if gelu else ref
    ref = ref + r if residual else ref
    y = small_linear(x, w, b if bias else None, norm=(g, beta if norm_bias else None, 1e-5) if norm else None,
                     gelu=gelu, residual=r if residual else None)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_small_linear_bf16_and_strided_input():
    """bf16 weights: the output is bf16 and within bf16 rounding of the fp32 computation; a strided x
    (a column slice) is read correctly."""
    torch.manual_seed(0)
    big = torch.randn(4, 2 * 64)
    x, w, b = big[:, 64:], torch.randn(48, 64) * 0.1, torch.randn(48)
    y = small_linear(x.bfloat16(), w.bfloat16(), b.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.linear(x, w, b), atol=0.05, rtol=0.02)


def test_greedy_next_is_torch_argmax_and_advances_the_inputs():
    """Ties pick the first index (as torch.argmax); only the first n_vocab columns count; a row
    shorter than SPLITS columns and a row of -inf work; inputs get the ids and positions + 1, capped."""
    torch.manual_seed(0)
    V, n_vocab = 3000, 2990
    logits = torch.randn(5, V).bfloat16()  # bf16: many exact ties
    logits[1, 2995] = 100.0  # padding column: must not win
    logits[2, [7, 2000]] = 50.0  # a tie across splits
    logits[3] = float("-inf")
    inputs = torch.tensor([[0] * 6, [3, 10, 99, 0, 98, 42]])
    ids = greedy_next(logits, n_vocab, inputs[:, :5], max_pos=99)
    assert ids.tolist() == logits[:, :n_vocab].float().argmax(-1).tolist() and ids[2] == 7 and ids[3] == 0
    assert inputs[0, :5].tolist() == ids.tolist() and inputs[0, 5] == 0  # the 6th column is not ours
    assert inputs[1].tolist() == [4, 11, 99, 1, 99, 42]
    small = torch.tensor([[1.0, 3.0, 3.0, 2.0]])  # fewer columns than SPLITS
    assert SPLITS > 4 and greedy_next(small, 4).tolist() == [1]
    with pytest.raises(ValueError, match="n_vocab"):
        greedy_next(small, 5)


def test_greedy_next_under_a_grammar_masks_and_advances_the_states():
    """With bias/next_state tables (03_model's protocol grammar), each row's pick is the argmax of
    logits + bias[its state], and inputs[2] gets next_state[state, pick]; rows in the free state
    (0) pick the plain argmax. Bad tables are refused."""
    from model.grammar import ProtocolGrammar
    torch.manual_seed(1)
    special = {name: 3000 + i for i, name in enumerate(
        ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|thought|>", "<|action|>", "<|observation|>",
         "<|answer|>"])}
    V, n_vocab = 3016, 3008
    g = ProtocolGrammar(special, n_vocab, V)
    logits = torch.randn(6, V).bfloat16()
    logits[:, 3000:3008] += 10.0  # the special tokens would win everywhere unconstrained
    states = torch.tensor([0, 1, 2, 3, 4, 1])
    inputs = torch.stack([torch.zeros(6, dtype=torch.long), torch.arange(6), states])
    ids = greedy_next(logits, n_vocab, inputs, 99, g.bias, g.next_state)
    want = (logits[:, :n_vocab].float() + g.bias[states, :n_vocab]).argmax(-1)
    assert ids.tolist() == want.tolist() and ids[0] >= 3000 and all(3000 <= i < 3008 for i in ids[[1, 5]])
    assert inputs[0].tolist() == ids.tolist() and inputs[1].tolist() == list(range(1, 7))
    assert inputs[2].tolist() == [g.advance(int(s), int(i)) for s, i in zip(states, ids)]
    assert ids[2] in (special["<|action|>"], special["<|answer|>"])  # what may close a thought
    with pytest.raises(ValueError, match=r"\(3, >= 6\)"):
        greedy_next(logits, n_vocab, inputs[:2], 99, g.bias, g.next_state)
    with pytest.raises(ValueError, match="state row"):
        greedy_next(logits, n_vocab, inputs, 99, g.bias, g.next_state.long())


@pytest.mark.parametrize("B, H, D, dtype, splits", [(1, 2, 16, torch.float32, 1), (3, 3, 8, torch.float32, 4),
                                                    (MAX_ROWS, 2, 16, torch.bfloat16, 2), (2, 4, 4, torch.float32, 8)])
def test_qkv_attention_equals_small_linear_then_decode_attention(B, H, D, dtype, splits):
    """The one-kernel LayerNorm -> qkv -> cache write -> attention gives what the two kernels give:
    the same keys/values bit for bit (the same rounding), the same outputs up to the order of the
    softmax's sums (it takes the new key last, decode_attention first), with rows at position 0, on
    a 64-key block edge and at the cache's end, with the keys split over 1 to 8 programs per head (more
    slices than a short row has keys, too); its counters are back at zero after each call, so calls chain."""
    torch.manual_seed(B * H + D)
    C, L = H * D, 140
    x, w, b = torch.randn(B, C, dtype=dtype), (torch.randn(3 * C, C) / C ** 0.5).to(dtype), torch.randn(3 * C).to(dtype)
    g, beta = torch.randn(C).to(dtype), torch.randn(C).to(dtype)
    cache = torch.randn(2, B + 1, H, L, D, dtype=dtype)  # row views of a bigger cache, as from KVCache
    ours, ref = cache.clone(), cache.clone()
    for pos in (torch.tensor([0, 70, 64, L - 1][:B]), torch.tensor([1, 71, 65, 3][:B])):  # two calls
        y = qkv_attention(x, w, b, (g, beta, 1e-5), ours[0, 1:], ours[1, 1:], pos, H, splits=splits)
        y_ref = decode_attention(small_linear(x, w, b, norm=(g, beta, 1e-5)), ref[0, 1:], ref[1, 1:], pos, H)
        assert y.dtype == dtype
        torch.testing.assert_close(y, y_ref, atol=1e-6 if dtype == torch.float32 else 1e-2, rtol=1e-5)
        assert torch.equal(ours, ref)  # the same keys/values written, nothing else touched
        assert not _head_counters(x.device).any()


def test_qkv_attention_rejects_bad_input():
    k = torch.zeros(1, 2, 10, 8)
    args = (torch.ones(16), None, 1e-5)
    with pytest.raises(ValueError, match="1 to"):
        qkv_attention(torch.zeros(MAX_ROWS + 1, 16), torch.zeros(48, 16), None, args, k, k, torch.zeros(5), 2)
    with pytest.raises(ValueError, match="weight"):
        qkv_attention(torch.zeros(1, 16), torch.zeros(40, 16), None, args, k, k, torch.zeros(1), 2)
    with pytest.raises(ValueError, match="power of two"):
        qkv_attention(torch.zeros(1, 12), torch.zeros(36, 12), None, (torch.ones(12), None, 1e-5),
                      torch.zeros(1, 2, 10, 6), torch.zeros(1, 2, 10, 6), torch.zeros(1), 2)
    with pytest.raises(ValueError, match="caches must be"):
        qkv_attention(torch.zeros(1, 16), torch.zeros(48, 16), None, args, torch.zeros(1, 4, 10, 4),
                      torch.zeros(1, 4, 10, 4), torch.zeros(1), 2)
    with pytest.raises(ValueError, match="splits must be"):
        qkv_attention(torch.zeros(1, 16), torch.zeros(48, 16), None, args, k, k, torch.zeros(1), 2, splits=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embed_is_token_plus_position_embedding(dtype):
    torch.manual_seed(0)
    wte, wpe = torch.randn(50, 1100, dtype=dtype), torch.randn(20, 1100, dtype=dtype)  # 2 column blocks
    inputs = torch.tensor([[3, 49, 0], [0, 19, 7]])
    x = embed(inputs[0], inputs[1], wte, wpe)
    ref = F.embedding(inputs[0], wte) + F.embedding(inputs[1], wpe)
    assert x.dtype == dtype
    if dtype == torch.float32:
        assert torch.equal(x, ref)
    else:  # one rounding of the fp32 sum (the interpreter truncates where the GPU rounds to nearest)
        torch.testing.assert_close(x.float(), ref.float(), atol=1e-6, rtol=1 / 128)
    with pytest.raises(ValueError, match="need idx"):
        embed(inputs[0], inputs[1, :2], wte, wpe)


def test_small_linear_rejects_bad_input():
    w = torch.zeros(8, 16)
    with pytest.raises(ValueError, match="1 to"):
        small_linear(torch.zeros(MAX_ROWS + 1, 16), w)
    with pytest.raises(ValueError, match="need x"):
        small_linear(torch.zeros(2, 15), w)
    with pytest.raises(ValueError, match="residual must be"):
        small_linear(torch.zeros(2, 16), w, residual=torch.zeros(2, 9))
    big = torch.zeros(8, 8192)
    with pytest.raises(ValueError, match="fused LayerNorm needs K"):
        small_linear(torch.zeros(1, 8192), big, norm=(torch.ones(8192), None, 1e-5))


def test_decode_kernels_setting_is_checked():
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=1, n_embd=8, decode_kernels="triton"))
    cache = model.new_kv_cache(1)
    with torch.no_grad():
        model(torch.tensor([[1, 2]]), kv_cache=cache)
    with pytest.raises(RuntimeError, match="inference only"):  # training mode, gradients on
        model(torch.tensor([[3]]), kv_cache=cache)
    model.config.decode_kernels = "fast"
    with pytest.raises(ValueError, match="unknown decode_kernels"):
        with torch.no_grad():
            model.eval()(torch.tensor([[3]]), kv_cache=cache)


@pytest.mark.gpu
@pytest.mark.parametrize("prompt_lens", [(5, 70, 300), (5, 70, 300, 1, 2, 3, 4, 5, 6, 7)])
def test_model_decode_step_on_compiled_kernels_matches_torch_path_on_cuda(prompt_lens):
    """bf16 on the GPU (compiled kernels, not the interpreter), GPT-2 small's head layout; 3 rows
    (small_linear) and 10 (cuBLAS + add_layer_norm)."""
    decode_both_ways(GPTConfig(block_size=512, vocab_size=1000, n_layer=2, n_head=12, n_embd=768), "cuda",
                     torch.bfloat16, prompt_lens=prompt_lens, tokens=(3, 9, 40, 7), tol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("B", [1, 2, 3, MAX_ROWS])
def test_qkv_attention_compiled_equals_two_kernels_on_cuda(B):
    """bf16 on the GPU at GPT-2 small's shape (12 heads of 64, a 1024-position cache, 8 key slices per
    head): the fused kernel gives the two-kernel result at every row count and at positions on both
    sides of the slice and block edges (the interpreter cannot show a compiler's or a race's bug)."""
    torch.manual_seed(B)
    C, H = 768, 12
    for p in (0, 1, 5, 31, 32, 63, 64, 65, 300, 1023):
        x = torch.randn(B, C, device="cuda").bfloat16()
        w, b = (torch.randn(3 * C, C, device="cuda") * 0.02).bfloat16(), (torch.randn(3 * C, device="cuda") * 0.02).bfloat16()
        norm = (torch.randn(C, device="cuda").bfloat16(), torch.randn(C, device="cuda").bfloat16(), 1e-5)
        cache = torch.randn(2, B, H, 1024, 64, device="cuda").bfloat16()
        ref = cache.clone()
        pos = torch.tensor([p, max(p - 7, 0), p // 2, 0][:B], device="cuda")
        y = qkv_attention(x, w, b, norm, cache[0], cache[1], pos, H)
        y_ref = decode_attention(small_linear(x, w, b, norm=norm), ref[0], ref[1], pos, H)
        torch.testing.assert_close(y.float(), y_ref.float(), atol=2e-2, rtol=2e-2, msg=f"position {p}")
        assert torch.equal(cache, ref) and not _head_counters(x.device).any()
