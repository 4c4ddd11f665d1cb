import torch

from helix4d.nn.attention import AnchorCache, FrameAttention, FrameLayout
from helix4d.nn.blocks import (
    TemporalDiTBlock,
    freeze_all_but_temporal,
    init_temporal_from_base,
    temporal_parameters,
)
from helix4d.nn.rope import RopeConfig, rope_angles
from helix4d.sparse import SparseTensor

DIM, HEADS, COND, L = 32, 4, 12, 5


def _randomise(block, seed=0):
    """Give the zero-initialised parts random values so every branch is active; temporal differs from base."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("gamma") else 0.0))
    return block


def _seqs(counts_per_seq, seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for counts in counts_per_seq:
        coords = [torch.randint(0, 8, (n, 3), generator=g) for n in counts]
        feats = [torch.randn(n, DIM, generator=g) for n in counts]
        seqs.append(SparseTensor.from_frames(coords, feats))
    st = SparseTensor.cat(seqs)
    cond = torch.randn(st.num_frames, L, COND, generator=g)
    t_emb = torch.randn(len(counts_per_seq), DIM, generator=g)  # sampling-t embedding per sequence
    t0_emb = torch.randn(DIM, generator=g)  # t = 0 embedding (anchor)
    seq_of_token = FrameLayout.from_sparse(st).token_sequence_index()
    c = torch.where((st.frame_index == 0)[:, None], t0_emb, t_emb[seq_of_token])  # (N, D) per token
    return st, cond, c


def _run(blocks, st, cond, c, window=1, cache=None, anchor_included=True):
    layout = FrameLayout.from_sparse(st, anchor_included)
    angles = rope_angles(st.coords.float(), RopeConfig(head_dim=DIM // HEADS))
    x = st.feats
    for i, b in enumerate(blocks):
        x = b(x, c, layout, angles, cond, FrameAttention(window), None if cache is None else cache[i])
    return x


def test_fresh_block_is_identity():
    st, cond, c = _seqs([[4, 3, 5]])
    block = TemporalDiTBlock(DIM, HEADS, COND)
    assert torch.equal(_run([block], st, cond, c), st.feats)


def test_temporal_copy_starts_equal_to_base():
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND))
    assert not torch.equal(block.self_attn.to_qkv.weight, block.temporal_attn.to_qkv.weight)
    init_temporal_from_base(torch.nn.ModuleList([block]))
    for (n1, p1), (n2, p2) in zip(block.self_attn.named_parameters(), block.temporal_attn.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and p1.data_ptr() != p2.data_ptr()


def test_freeze_gives_gradients_only_to_temporal_copies():
    st, cond, c = _seqs([[3, 4, 2]])
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND))
    # unfrozen: base self-attention does get gradients (so the frozen check below can fail)
    _run([block], st, cond, c).square().sum().backward()
    assert block.self_attn.to_qkv.weight.grad.abs().sum() > 0
    block.zero_grad(set_to_none=True)
    trainable = freeze_all_but_temporal(block)
    assert {id(p) for p in trainable} == {id(p) for p in temporal_parameters(block)}
    assert len(trainable) == len(list(block.temporal_attn.parameters()))
    _run([block], st, cond, c).square().sum().backward()
    for name, p in block.named_parameters():
        if name.startswith("temporal_attn."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_anchor_cache_matches_full_pass():
    st, cond, c = _seqs([[4, 3, 0, 5], [3, 2, 4]], seed=1)
    blocks = [_randomise(TemporalDiTBlock(DIM, HEADS, COND), seed=s) for s in range(2)]
    full = _run(blocks, st, cond, c)
    is_anchor = st.frame_index == 0
    anchor_frames = torch.tensor([0, 4])
    # 1) anchor frames alone, filling the cache
    cache = AnchorCache.empty(len(blocks))
    a_st = st.select_frames(anchor_frames)
    a_out = _run(blocks, a_st, cond[anchor_frames], c[is_anchor], cache=cache)
    assert all(layer.filled for layer in cache.layers)
    assert torch.allclose(a_out, full[is_anchor], atol=1e-5)
    # 2) frames >= 1 only, reading the cache
    keep = torch.ones(st.num_frames, dtype=torch.bool)
    keep[anchor_frames] = False
    r_st = st.select_frames(keep)
    r_out = _run(blocks, r_st, cond[keep], c[~is_anchor], cache=cache, anchor_included=False)
    assert torch.allclose(r_out, full[~is_anchor], atol=1e-5)


def test_per_token_conditioning():
    st, cond, c = _seqs([[3, 4, 4]], seed=2)
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND))
    out = _run([block], st, cond, c)
    is_anchor = st.frame_index == 0
    c2 = c.clone()
    c2[~is_anchor] += 1.0  # another sampling t for frames >= 1 only
    out2 = _run([block], st, cond, c2)
    assert torch.allclose(out[is_anchor], out2[is_anchor], atol=1e-6)  # anchor stream: t = 0 untouched
    assert not torch.allclose(out[~is_anchor], out2[~is_anchor], atol=1e-3)


def test_dual_weights_route_by_frame():
    st, cond, c = _seqs([[3, 4, 4]], seed=3)
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND))
    out = _run([block], st, cond, c)
    with torch.no_grad():
        block.temporal_attn.to_qkv.weight.add_(0.5)
    out2 = _run([block], st, cond, c)
    is_anchor = st.frame_index == 0
    assert torch.allclose(out[is_anchor], out2[is_anchor], atol=1e-6)
    assert not torch.allclose(out[~is_anchor], out2[~is_anchor], atol=1e-3)


def test_cross_attention_stays_in_its_frame():
    st, cond, c = _seqs([[3, 4, 4]], seed=4)
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND))
    out = _run([block], st, cond, c)
    cond2 = cond.clone()
    cond2[1] += 1.0
    out2 = _run([block], st, cond2, c)
    in_frame1 = st.frame_index == 1
    assert torch.allclose(out[~in_frame1], out2[~in_frame1], atol=1e-6)
    assert not torch.allclose(out[in_frame1], out2[in_frame1], atol=1e-3)


def test_dense_stage_tokens_and_bf16():
    x = torch.randn(3, DIM, 2, 2, 2)
    st = SparseTensor.from_dense(x).to(torch.bfloat16)
    block = _randomise(TemporalDiTBlock(DIM, HEADS, COND)).to(torch.bfloat16)
    c = torch.randn(st.num_tokens, DIM, dtype=torch.bfloat16)
    out = _run([block], st, torch.randn(3, L, COND, dtype=torch.bfloat16), c, window=8)
    assert out.shape == (24, DIM) and out.dtype == torch.bfloat16 and torch.isfinite(out).all()
