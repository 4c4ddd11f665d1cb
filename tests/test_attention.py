import warnings

import pytest
import torch

from helix4d.errors import ConfigError
from helix4d.nn import attention as attn_mod
from helix4d.nn.attention import FrameAttention, FrameLayout, windowed_anchored_attention

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

H, D = 2, 8


def _layout(counts_per_seq, anchor_included=True):
    counts = [c for seq in counts_per_seq for c in seq]
    offsets = torch.tensor([0] + counts).cumsum(0)
    return FrameLayout(offsets, tuple(len(s) for s in counts_per_seq), anchor_included)


def _qkv(n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, H, D, generator=g, dtype=dtype) for _ in range(3)]


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


LAYOUTS = {
    "uneven": [[5, 3, 7, 2, 4]],
    "empty_frame": [[4, 0, 3, 5]],
    "single_frame": [[6]],
    "two_sequences": [[3, 4, 2], [5, 1, 0, 3, 2]],
    "empty_anchor": [[0, 3, 4]],
}


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("window", [0, 1, 2, 16])
@pytest.mark.parametrize("anchor", [True, False])
def test_backends_agree(name, window, anchor):
    layout = _layout(LAYOUTS[name])
    q, k, v = _qkv(layout.num_tokens, seed=window)
    ref = windowed_anchored_attention(q, k, v, layout, FrameAttention(window, anchor, backend="dense"))
    out = windowed_anchored_attention(q, k, v, layout, FrameAttention(window, anchor, backend="loop"))
    flex = attn_mod._flex_attention(q, k, v, layout, window, anchor, None)  # uncompiled flex runs on CPU
    assert out.shape == ref.shape == (layout.num_tokens, H, D)
    assert _rel_err(out, ref) < 1e-5
    assert _rel_err(flex, ref) < 1e-5


def test_rule_matches_explicit_pairs():
    """Check the rule itself (not only backend agreement): a one-hot value per frame shows what each query saw."""
    layout = _layout([[2, 2, 2, 2, 2]])
    f = layout.token_frame_index()
    q = torch.zeros(10, 1, 5)
    k = torch.zeros(10, 1, 5)  # equal scores -> outputs are the mean of the visible values
    v = torch.nn.functional.one_hot(f, 5).float()[:, None, :]
    out = windowed_anchored_attention(q, k, v, layout, FrameAttention(1, anchor=True))[:, 0]  # (10, 5)
    seen = out > 0
    assert seen[0].tolist() == [True, False, False, False, False]  # anchor sees only itself
    assert seen[2].tolist() == [True, True, True, False, False]  # frame 1: frames 0..2
    assert seen[8].tolist() == [True, False, False, True, True]  # frame 4: anchor + 3..4
    assert torch.allclose(out[8], torch.tensor([1 / 3, 0, 0, 1 / 3, 1 / 3]))  # anchor counted once


def test_sequences_do_not_mix():
    layout = _layout([[3, 2, 2], [2, 3]])
    q, k, v = _qkv(layout.num_tokens, 1)
    out = windowed_anchored_attention(q, k, v, layout, FrameAttention(8))
    v2 = v.clone()
    v2[7:] += 5.0  # change the second sequence only
    out2 = windowed_anchored_attention(q, k, v2, layout, FrameAttention(8))
    assert torch.equal(out[:7], out2[:7]) and not torch.allclose(out[7:], out2[7:])


@pytest.mark.parametrize("backend", ["loop", "dense"])
def test_anchor_outputs_ignore_other_frames(backend):
    layout = _layout([[4, 3, 5], [3, 2]])
    q, k, v = _qkv(layout.num_tokens, 2)
    out = windowed_anchored_attention(q, k, v, layout, FrameAttention(1, backend=backend))
    anchor = layout.anchor_token_mask()
    q2, k2, v2 = (torch.where(anchor[:, None, None], t, t + torch.randn_like(t)) for t in (q, k, v))
    out2 = windowed_anchored_attention(q2, k2, v2, layout, FrameAttention(1, backend=backend))
    assert torch.allclose(out[anchor], out2[anchor], atol=1e-6)
    assert not torch.allclose(out[~anchor], out2[~anchor])


@pytest.mark.parametrize("backend", ["loop", "dense"])
@pytest.mark.parametrize("window", [0, 1, 9])
def test_external_anchor_kv_equals_full(backend, window):
    counts = [[4, 3, 0, 5], [3, 2, 2]]
    full = _layout(counts)
    q, k, v = _qkv(full.num_tokens, 3)
    ref = windowed_anchored_attention(q, k, v, full, FrameAttention(window, backend="dense"))
    anchor = full.anchor_token_mask()
    rest = _layout([c[1:] for c in counts], anchor_included=False)
    anchor_kv = [(k[0:4], v[0:4]), (k[12:15], v[12:15])]
    attention = FrameAttention(window, backend=backend)
    out = windowed_anchored_attention(q[~anchor], k[~anchor], v[~anchor], rest, attention, anchor_kv=anchor_kv)
    assert _rel_err(out, ref[~anchor]) < 1e-5


def test_flex_on_cpu_warns_once_and_falls_back():
    layout = _layout([[3, 2, 4]])
    q, k, v = _qkv(9)
    attn_mod._warned_flex_cpu = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = windowed_anchored_attention(q, k, v, layout, FrameAttention(1, backend="flex"))
        windowed_anchored_attention(q, k, v, layout, FrameAttention(1, backend="flex"))
    assert len([w for w in caught if "flex" in str(w.message)]) == 1
    assert torch.equal(out, windowed_anchored_attention(q, k, v, layout, FrameAttention(1, backend="loop")))


def test_loop_backward_matches_dense():
    layout = _layout([[3, 2, 4], [2, 2]])
    grads = []
    for backend in ("loop", "dense"):
        q, k, v = (t.requires_grad_() for t in _qkv(13, 5))
        windowed_anchored_attention(q, k, v, layout, FrameAttention(1, backend=backend)).square().sum().backward()
        grads.append(torch.cat([q.grad, k.grad, v.grad]))
    assert _rel_err(grads[0], grads[1]) < 1e-5


def test_bad_arguments():
    layout = _layout([[3, 2]])
    q, k, v = _qkv(5)
    with pytest.raises(ValueError):
        windowed_anchored_attention(q[:4], k[:4], v[:4], layout, FrameAttention(1))
    with pytest.raises(ValueError):
        windowed_anchored_attention(q, k, v, layout, FrameAttention(1), anchor_kv=[(k[:1], v[:1])])
    with pytest.raises(ValueError):
        windowed_anchored_attention(q, k, v, _layout([[3, 2]], anchor_included=False), FrameAttention(1))
    with pytest.raises(ValueError, match="None"):  # only the flow fills in its own window
        windowed_anchored_attention(q, k, v, layout, FrameAttention())


@pytest.mark.parametrize("window", [-1, True, 1.5, "2"])
def test_frame_attention_checks_its_window_when_made(window):
    with pytest.raises(ValueError, match="window"):
        FrameAttention(window)


def test_frame_attention_checks_its_backend_when_made():
    with pytest.raises(ConfigError, match="nope"):
        FrameAttention(1, backend="nope")
    assert FrameAttention(0).window == 0 and FrameAttention().window is None


@pytest.mark.parametrize("anchor", [True, False])
def test_kept_pairs_counts_the_rule(anchor):
    from helix4d.bench.attention import kept_pairs

    layout = _layout([[3, 0, 2, 4], [1, 2]])
    f, s = layout.token_frame_index(), layout.token_sequence_index()
    mask = attn_mod._allowed(f[:, None], s[:, None], f[None], s[None], 1, anchor)
    assert kept_pairs(layout, 1, anchor) == int(mask.sum())


def test_bench_cli_json():
    import json

    from typer.testing import CliRunner

    from helix4d.cli import app

    args = ["bench", "attention", "--frames", "3", "--tokens", "4", "--heads", "1", "--head-dim", "8"]
    result = CliRunner().invoke(app, [*args, "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["backend"] for r in rows] == ["dense", "loop"]
    keys = {"backend", "frames", "tokens_per_frame", "window", "heads", "head_dim", "ms", "useful_tflops"}
    assert keys | {"peak_mem_mb", "max_rel_err"} <= set(rows[0])
    assert rows[1]["max_rel_err"] < 1e-5 and rows[1]["tokens_per_frame"] == 4
