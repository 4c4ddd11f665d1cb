import pytest
import torch

from helix4d.sparse import SparseTensor


def _seq(counts, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = [torch.randint(0, 8, (n, 3), generator=g) for n in counts]
    feats = [torch.randn(n, c, generator=g) for n in counts]
    return SparseTensor.from_frames(coords, feats)


def test_from_frames_layout_with_empty_frame():
    st = _seq([3, 0, 2])
    assert st.frame_offsets.tolist() == [0, 3, 3, 5]
    assert st.frame_index.tolist() == [0, 0, 0, 2, 2]
    assert st.num_frames == 3 and st.frames_per_sequence == (3,)
    assert st.frame(1).num_tokens == 0 and st.frame(2).num_tokens == 2


def test_cat_keeps_sequences_apart():
    a, b = _seq([2, 1], seed=1), _seq([1, 0, 4], seed=2)
    st = SparseTensor.cat([a, b])
    assert st.frames_per_sequence == (2, 3)
    assert st.frame_offsets.tolist() == [0, 2, 3, 4, 4, 8]
    assert st.global_frame_index.tolist() == [0, 0, 1, 2, 4, 4, 4, 4]
    assert st.frame_index.tolist() == [0, 0, 1, 0, 2, 2, 2, 2]
    b2 = st.select_frames([2, 3, 4])
    assert torch.equal(b2.feats, b.feats) and torch.equal(b2.coords, b.coords)
    assert torch.equal(b2.frame_offsets, b.frame_offsets) and b2.frames_per_sequence == (3,)


def test_select_frames_drops_anchors_keeps_local_index():
    st = SparseTensor.cat([_seq([2, 1, 1], seed=3), _seq([1, 3], seed=4)])
    no_anchor = st.select_frames(st.frame_index.new_tensor([0, 1, 1, 0, 1]).bool())
    assert no_anchor.frames_per_sequence == (2, 1)
    assert no_anchor.frame_offsets.tolist() == [0, 1, 2, 5]
    assert no_anchor.frame_index.tolist() == [1, 2, 1, 1, 1]
    only_first = st.select_frames([0, 1, 2])
    assert only_first.frames_per_sequence == (3,)


def test_batch_coords_number_frames_across_sequences_and_come_back():
    st = SparseTensor.cat([_seq([2, 1, 1], seed=3), _seq([1, 0, 3], seed=4)]).select_frames([1, 2, 3, 4, 5])
    keys = st.batch_coords  # what sparse convolutions see: frames 0..4 of the batch, never two alike
    assert keys[:, 0].tolist() == [0, 1, 2, 4, 4, 4] and torch.equal(keys[:, 1:], st.coords[:, 1:])
    back = st.with_batch_voxels(keys, st.feats)
    assert torch.equal(back.coords, st.coords) and torch.equal(back.frame_offsets, st.frame_offsets)
    assert back.frames_per_sequence == st.frames_per_sequence and back.frame_index.tolist() == [1, 2, 0, 2, 2, 2]
    coarse = st.with_batch_voxels(torch.tensor([[0, 1, 1, 1], [4, 0, 0, 0]]), torch.zeros(2, 5))  # e.g. a VAE's
    assert coarse.frame_offsets.tolist() == [0, 1, 1, 1, 1, 2] and coarse.frame_index.tolist() == [1, 2]
    with pytest.raises(ValueError, match="grouped by global frame"):
        st.with_batch_voxels(torch.tensor([[4, 0, 0, 0], [0, 1, 1, 1]]), torch.zeros(2, 5))


def test_dense_roundtrip():
    x = torch.randn(2, 3, 2, 3, 4)
    st = SparseTensor.from_dense(x)
    assert st.num_tokens == 2 * 24 and st.frame_offsets.tolist() == [0, 24, 48]
    assert torch.equal(st.to_dense((2, 3, 4)), x)
    assert torch.equal(st.feats[5], x[0, :, 0, 1, 1])


def test_replace_and_to():
    st = _seq([2, 2])
    st2 = st.replace(torch.zeros(4, 7)).to(torch.float64)
    assert st2.feats.dtype == torch.float64 and st2.num_channels == 7 and st2.coords.dtype == torch.int64


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(coords=torch.zeros(3, 3, dtype=torch.int64)),
        dict(feats=torch.zeros(2, 1)),
        dict(frame_offsets=torch.tensor([0, 4, 3])),
        dict(frame_offsets=torch.tensor([0, 3])),
        dict(frames_per_sequence=(0,)),
    ],
)
def test_validation(kwargs):
    base = dict(
        coords=torch.zeros(3, 4, dtype=torch.int64),
        feats=torch.zeros(3, 1),
        frame_offsets=torch.tensor([0, 1, 3]),
        frames_per_sequence=(2,),
    )
    base.update(kwargs)
    with pytest.raises(ValueError):
        SparseTensor(**base)
