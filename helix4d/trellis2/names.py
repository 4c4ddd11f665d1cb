"""Parameter names: TRELLIS.2 flow checkpoints ↔ helix4d `FlowTransformer`.

Structure is equal by construction (`FlowConfig(shared_modulation=True, modulated_output=False)`), so almost every
name is the same. What differs:
- `RENAMES`: TRELLIS wraps its MLP in a `FeedForwardNet` (`blocks.N.mlp.mlp.{0,2}`); our block's `mlp` is the
  Sequential itself (`blocks.N.mlp.{0,2}`). Only the name differs.
- `DERIVED_SOURCE_KEYS`: `rope_phases` (dense SS flow) is a buffer TRELLIS derives from the grid coordinates; we
  compute RoPE angles on the fly, so it holds nothing learned and is dropped when a checkpoint carries it.
- `blocks.N.temporal_attn.*` exist only here: the temporal self-attention copies, initialised from `self_attn`.
"""

from __future__ import annotations

import re

# (TRELLIS.2 name, helix4d name) templates; {n} and {k} are integers, {p} is "weight" or "bias".
RENAMES: tuple[tuple[str, str], ...] = (("blocks.{n}.mlp.mlp.{k}.{p}", "blocks.{n}.mlp.{k}.{p}"),)
DERIVED_SOURCE_KEYS = frozenset({"rope_phases"})
_TEMPORAL = re.compile(r"^blocks\.(\d+)\.temporal_attn\.(.+)$")
_FIELDS = {"n": r"(?P<n>\d+)", "k": r"(?P<k>\d+)", "p": r"(?P<p>weight|bias)"}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w)\}", template)  # literal, field, literal, field, ...
    body = "".join(_FIELDS[x] if i % 2 else re.escape(x) for i, x in enumerate(parts))
    return re.compile(f"^{body}$")


def _rename(name: str, forward: bool) -> str:
    for trellis, ours in RENAMES:
        src, dst = (trellis, ours) if forward else (ours, trellis)
        m = _pattern(src).match(name)
        if m:
            return dst.format(**m.groupdict())
    return name


def to_helix4d(name: str) -> str:
    """A TRELLIS.2 flow parameter name -> ours."""
    return _rename(name, forward=True)


def to_trellis2(name: str) -> str:
    """Our flow parameter name -> TRELLIS.2's; a temporal copy maps to the `self_attn` tensor it is copied from."""
    m = _TEMPORAL.match(name)
    return _rename(f"blocks.{m.group(1)}.self_attn.{m.group(2)}" if m else name, forward=False)


def is_temporal(name: str) -> bool:
    """True for our temporal self-attention copies (no TRELLIS.2 counterpart of their own)."""
    return _TEMPORAL.match(name) is not None
