"""The flow transformer: anchor cache equals the full pass, the anchor ignores other frames, zero-init output, and
an unnamed window is the flow's own."""

import torch

from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.nn.attention import FrameAttention
from helix4d.sparse import SparseTensor


def _model() -> FlowTransformer:
    torch.manual_seed(0)
    model = FlowTransformer(FlowConfig(in_channels=4, extra_channels=2, dim=32, depth=2, heads=2, cond_dim=8))
    with torch.no_grad():  # a trained-looking model: every branch non-zero
        for p in model.parameters():
            p.normal_(std=0.1)
    return model


def _tokens(counts=(5, 7, 0, 6)) -> SparseTensor:
    g = torch.Generator().manual_seed(1)
    coords = [torch.randint(0, 8, (n, 3), generator=g) for n in counts]
    return SparseTensor.from_frames(coords, [torch.randn(n, 4, generator=g) for n in counts])


def test_anchor_cache_equals_full_pass() -> None:
    model, x = _model(), _tokens()
    t = torch.where(x.frame_index == 0, 0.0, 0.7)
    cond, extra = torch.randn(x.num_frames, 3, 8), torch.randn(x.num_tokens, 2)
    full = model(x, t, cond, FrameAttention(1), extra)
    cache = model.empty_anchor_cache()
    first = x.frame_index == 0
    model(x.select_frames([0]), t[first], cond[:1], FrameAttention(1, cache=cache), extra[first])
    reading = FrameAttention(1, cache=cache, anchor_included=False)
    rest = model(x.select_frames([1, 2, 3]), t[~first], cond[1:], reading, extra[~first])
    torch.testing.assert_close(rest, full[~first], rtol=1e-5, atol=1e-5)


def test_anchor_is_the_static_pass() -> None:
    model, x = _model(), _tokens()
    t = torch.where(x.frame_index == 0, 0.0, 0.3)
    cond, extra = torch.randn(x.num_frames, 3, 8), torch.randn(x.num_tokens, 2)
    first = x.frame_index == 0
    full = model(x, t, cond, FrameAttention(2), extra)[first]
    alone = model(x.select_frames([0]), t[first], cond[:1], FrameAttention(2), extra[first])
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-5)


def test_fresh_model_predicts_zero_velocity() -> None:
    torch.manual_seed(0)
    model = FlowTransformer(FlowConfig(in_channels=4, dim=32, depth=1, heads=2, cond_dim=8))
    x = _tokens()
    v = model(x, torch.rand(x.num_tokens), torch.randn(x.num_frames, 3, 8))
    assert v.shape == (x.num_tokens, 4) and torch.count_nonzero(v) == 0


def test_an_unnamed_window_is_the_flows_own() -> None:
    model, x = _model(), _tokens()
    t, cond, extra = torch.rand(x.num_tokens), torch.randn(x.num_frames, 3, 8), torch.randn(x.num_tokens, 2)
    own = model(x, t, cond, FrameAttention(), extra)
    assert torch.equal(own, model(x, t, cond, FrameAttention(model.config.window), extra))
    assert not torch.allclose(own, model(x, t, cond, FrameAttention(model.config.window + 1), extra))
