"""The attention blocks auto_spec follows (nn.TransformerEncoder and its layers, a bare nn.MultiheadAttention),
as rules of the tracer in lmc_core.align.auto; and the names that module's users import (the error, a site)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from .spec import Axis, HeadGroup


class UnsupportedModelError(ValueError):
    """auto_spec met something it cannot follow; the message names it and says how to write a spec by hand."""


HAND = ("write a PermutationSpec by hand (lmc_core.align: UnitGroup and Axis, see lmc_core.align.auto's docstring) "
        "and pass spec=...")


@dataclass(frozen=True)
class Site:
    """Where a group's units can be read: the output of fx node `node`, units on `axis`, in blocks of `block`."""

    node: str
    axis: int
    block: int = 1


@dataclass(frozen=True)
class _First:
    """A stand-in node whose first argument is `arg` (consume reads the site from node.args[0])."""

    arg: torch.fx.Node

    @property
    def args(self) -> tuple:
        return (self.arg,)


class AttentionRules:
    """Rules of auto's _Tracer for attention modules (a mixin: it uses the tracer's vars, places and sites)."""

    def encoder(self, m: nn.Module, p: str, c, where: str, shp):
        """nn.TransformerEncoder / nn.TransformerEncoderLayer (a leaf, as every torch.nn module under torch.fx): every
        layer reads and writes the units it is given (its residual stream: in_proj's inputs, out_proj's and linear2's
        outputs, both LayerNorms, the encoder's final norm); its heads (a HeadGroup: whole heads, Q/K and V/O units
        within them) and its feed-forward units are groups of their own, read by weight matching only."""
        layers = [(f"{p}layers.{i}.", lay) for i, lay in enumerate(m.layers)] if isinstance(
            m, nn.TransformerEncoder) else [(p, m)]
        d = layers[0][1].self_attn.embed_dim
        if c is not None and (c[1] != len(shp) - 1 or c[2] != 1):
            raise UnsupportedModelError(f"{where}: its input's units are not on the last axis; {HAND}")
        v = c[0] if c is not None else self.vars.new(d, p.rstrip("."))
        if c is None:
            self.vars.fix(v)  # the model's own input features: they stay in place
        for q, lay in layers:
            att = lay.self_attn
            if not att._qkv_same_embed_dim:  # noqa: SLF001 - separate q/k/v weights (kdim / vdim set)
                raise UnsupportedModelError(f"{where}: attention with kdim/vdim; {HAND}")
            w, b, o = q + "self_attn.in_proj_weight", q + "self_attn.in_proj_bias", q + "self_attn.out_proj."
            biased = b in self.state
            self.extra.append(HeadGroup(q + "self_attn.heads", att.num_heads, d // att.num_heads,
                                        qk=(Axis(w, 1, 0), Axis(w, 1, d)) + ((Axis(b, 1, 0), Axis(b, 1, d))
                                                                             if biased else ()),
                                        vo=(Axis(w, 1, 2 * d),) + ((Axis(b, 1, 2 * d),) if biased else ())
                                        + (Axis(o + "weight", 2),)))
            ff = self.vars.new(lay.linear1.out_features, q + "linear1")
            for param, ax, unit in ((w, 1, v), (o + "weight", 0, v), (o + "bias", 0, v), (q + "linear1.weight", 1, v),
                                    (q + "linear2.weight", 0, v), (q + "linear2.bias", 0, v),
                                    (q + "norm1.weight", 0, v), (q + "norm1.bias", 0, v), (q + "norm2.weight", 0, v),
                                    (q + "norm2.bias", 0, v), (q + "linear1.weight", 0, ff),
                                    (q + "linear1.bias", 0, ff), (q + "linear2.weight", 1, ff)):
                if param in self.state:
                    self.place(unit, param, ax, where)
        for t in ("weight", "bias"):
            if isinstance(m, nn.TransformerEncoder) and f"{p}norm.{t}" in self.state:
                self.place(v, f"{p}norm.{t}", 0, where)
        return (v, len(shp) - 1, 1)

    def attention(self, node, m: nn.MultiheadAttention, p: str, where: str):
        """A bare nn.MultiheadAttention (a leaf under torch.fx): in_proj (or q/k/v_proj) reads the units of query,
        key and value (one permutation when they share in_proj_weight: their unit sets become one group), its heads
        are a HeadGroup (whole heads, Q/K and V/O units within them), out_proj writes new units like a Linear. The
        output is the tuple (attention output, weights): only the first carries units."""
        if m.bias_k is not None:
            raise UnsupportedModelError(f"{where}: add_bias_kv=True (bias_k and bias_v) is not followed; {HAND}")
        if node.kwargs.get("average_attn_weights") is False and node.kwargs.get("need_weights") is not False:
            raise UnsupportedModelError(f"{where}: returns per-head attention weights (average_attn_weights=False), "
                                        f"which a permutation of the heads reorders; {HAND}")
        names = ("query", "key", "value")
        ins = [node.kwargs.get(n, node.args[i] if len(node.args) > i else None) for i, n in enumerate(names)]
        if not all(isinstance(a, torch.fx.Node) and self.shape(a) for a in ins):
            raise UnsupportedModelError(f"{where}: query, key and value must be tensors; {HAND}")
        cs = [self.chan.get(a) for a in ins]
        cs = [None if c is not None and c[0] in ("attr", "tuple") else c for c in cs]
        for a, c in zip(ins, cs):
            if c is not None and (c[1] != len(self.shape(a)) - 1 or c[2] != 1):
                raise UnsupportedModelError(f"{where}: its inputs' units are not on the last axis; {HAND}")
        d, h = m.embed_dim, m.num_heads
        biased = p + "in_proj_bias" in self.state
        if m._qkv_same_embed_dim:  # noqa: SLF001 - one in_proj_weight [3 * d, d] reads all three
            w, b = p + "in_proj_weight", p + "in_proj_bias"
            tracked = [c for c in cs if c is not None]
            if tracked:
                v = tracked[0][0]
                for c in tracked[1:]:
                    v = self.vars.union(v, c[0], where)
                if len(tracked) < 3:
                    self.vars.fix(v)  # read with the model's input through one weight: both stay in place
                for a, c in dict(zip(ins, cs)).items():  # self-attention: one site, read once
                    if c is not None:
                        self.sites.setdefault(v, []).append(Site(a.name, c[1], 1))
                self.place(v, w, 1, where)
            qk = (Axis(w, 1, 0), Axis(w, 1, d)) + ((Axis(b, 1, 0), Axis(b, 1, d)) if biased else ())
            vo = (Axis(w, 1, 2 * d),) + ((Axis(b, 1, 2 * d),) if biased else ())
        else:  # kdim / vdim: separate projections, each reading its own input
            for a, c, n in zip(ins, cs, "qkv"):
                self.consume(_First(a), c, f"{p}{n}_proj_weight", 1, where, self.shape(a)[-1])
            pw = lambda n, off: (Axis(f"{p}{n}_proj_weight", 1),) + ((Axis(p + "in_proj_bias", 1, off),)  # noqa
                                                                     if biased else ())
            qk, vo = pw("q", 0) + pw("k", d), pw("v", 2 * d)
        self.extra.append(HeadGroup(p + "heads", h, d // h, qk=qk, vo=vo + (Axis(p + "out_proj.weight", 2),)))
        out = self.create(d, p + "out_proj", [(p + "out_proj.weight", 0)] + (
            [(p + "out_proj.bias", 0)] if p + "out_proj.bias" in self.state else []), len(self.shape(ins[0])) - 1)
        return ("tuple", (out, None))
