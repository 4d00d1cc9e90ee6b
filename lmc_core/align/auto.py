"""Automatic permutation specs for torch.fx-traceable models (MLPs, small CNNs and ResNets).

`auto_spec(model, sample)` traces the model (torch.fx.symbolic_trace), runs the sample through the graph for its
shapes, and follows every tensor's feature axis: a Linear, Conv1d/Conv2d or Embedding starts a new set of units
(one permutation group), BatchNorm and LayerNorm carry it (their weights, biases and running statistics are
permuted with it), elementwise activations, dropout, pooling and softmax pass it through, a residual addition
(or multiplication) of two tensors makes their units one group, a flatten of [N, C, H, W] to [N, C*H*W] carries the
C units in blocks of H*W (the next Linear's weight is seen as [out, C, H*W] while matching), a mean or sum over
other axes keeps it. Units that reach the model's input or output stay in place.

An nn.TransformerEncoder (or one of its layers) is kept whole and followed by its parameters: the units it is
given are its residual stream (LayerNorms included), its heads a HeadGroup and its feed-forward units a group of
their own, both for weight matching (activation matching has no site inside it). A bare nn.MultiheadAttention reads
the units of its query, key and value, permutes its heads (a HeadGroup) and writes new units through out_proj.

Anything else — other attention (Hugging Face objects: lmc_core.align.hf_specs), a reshape that splits an axis, a grouped convolution, a functional layer whose weight
is not a module, data-dependent control flow — raises UnsupportedModelError naming the node or module. Write the
spec by hand then (lmc_core.align.spec): for an ordinary model, axis 0 of every Axis is the copy axis that
lmc_core adds, so `Axis("0.weight", 1)` is the output axis of the Linear `0` and `Axis("2.weight", 2)` the input
axis of the Linear `2`:

    spec = PermutationSpec((UnitGroup("hidden", 64, (Axis("0.weight", 1), Axis("0.bias", 1),
                                                     Axis("2.weight", 2))),))
    lmc_core.align_models(model_a, model_b, sample, spec=spec)   # checked before use

The spec is what Git Re-Basin's weight matching and activation matching permute (Ainsworth et al. 2023, sec. 3);
this module builds it and the activation sites (fx nodes) activation matching reads, and knows no model family.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .auto_attention import HAND, AttentionRules, Site, UnsupportedModelError
from .spec import Axis, HeadGroup, PermutationSpec, State, UnitGroup


ELEMENTWISE_MODULES = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Mish,
                       nn.Hardtanh, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU, nn.Identity,
                       nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Softmax, nn.LogSoftmax)
POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
ELEMENTWISE_FUNCTIONS = {F.relu, F.gelu, F.silu, F.tanh, F.sigmoid, F.elu, F.leaky_relu, F.softplus, F.mish,
                         F.hardtanh, F.relu6, F.hardswish, F.dropout, F.softmax, F.log_softmax, torch.relu,
                         torch.tanh, torch.sigmoid, torch.exp, torch.abs, torch.softmax, torch.log_softmax,
                         operator.neg}
POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
                  F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
BINARY = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, torch.add, torch.sub,
          torch.mul}
PASS_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "clone", "float", "double", "half", "to", "detach", "exp",
                "abs", "softmax", "log_softmax", "neg", "gelu"}
RESHAPE_METHODS = {"flatten", "view", "reshape"}
REDUCE_METHODS = {"mean", "sum", "amax"}


@dataclass(frozen=True)
class ModuleSpec:
    """A permutation spec for an ordinary (single-copy) module, with what matching needs around it.

    spec: the groups; axes count the copy axis that `stacked` adds (axis 1 is a parameter's first axis).
    views: parameters seen in another shape while matching (a Linear after a flatten: [out, C, H*W]).
    sites: per group, where activation matching reads its units (auto specs only). notes: what stays in place.
    ties: {alias: first name} of tied parameters (one tensor under several names): the spec names the tensor once,
    under its first name; `stacked` leaves the aliases out and `unstacked` gives them the first name's value.
    """

    spec: PermutationSpec
    views: dict = field(default_factory=dict)
    sites: dict = field(default_factory=dict)
    graph: torch.fx.GraphModule | None = None
    ties: dict = field(default_factory=dict)

    def stacked(self, module_state: dict) -> State:
        """A module's state dict as the K=1 state the spec acts on (copy axis added, views applied, detached;
        tied aliases left out)."""
        return {n: t.detach().reshape(self.views.get(n, t.shape))[None] for n, t in module_state.items()
                if n not in self.ties}

    def unstacked(self, state: State, like: dict) -> dict:
        """Inverse of stacked(): tensors shaped like `like` (a module's state dict; an alias of a tied tensor gets
        its first name's value)."""
        return {n: state[self.ties.get(n, n)][0].reshape(like[n].shape) for n in like}


class _Vars:
    """Union-find over unit sets: size, places (param, axis without the copy axis), fixed (input/output)."""

    def __init__(self):
        self.parent, self.size, self.fixed, self.creator = [], [], [], []
        self.places: dict[tuple[str, int], int] = {}

    def new(self, size: int, creator: str) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(False)
        self.creator.append(creator)
        return len(self.parent) - 1

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int, where: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] != self.size[rb]:
            raise UnsupportedModelError(f"{where}: joins {self.size[ra]} units with {self.size[rb]}; {HAND}")
        lo, hi = min(ra, rb), max(ra, rb)
        self.parent[hi] = lo
        self.fixed[lo] = self.fixed[lo] or self.fixed[hi]
        return lo

    def place(self, v: int, param: str, axis: int, where: str) -> None:
        key = (param, axis)
        if key in self.places:
            self.union(self.places[key], v, where)
        else:
            self.places[key] = v

    def fix(self, v: int) -> None:
        self.fixed[self.find(v)] = True


class _Tracer(AttentionRules):
    """Walks the traced graph once, giving every tensor node its unit set: (var, axis, block) or None."""

    def __init__(self, gm: torch.fx.GraphModule, module_state: dict, ties: dict | None = None):
        self.gm, self.vars = gm, _Vars()
        self.ties = ties or {}  # alias -> first name: a tied tensor's places are the first name's
        self.chan: dict[torch.fx.Node, tuple[int, int, int] | None] = {}
        self.views: dict[str, tuple[int, ...]] = {}
        self.sites: dict[int, list[Site]] = {}
        self.state = module_state
        self.modules = dict(gm.named_modules())
        self.extra: list[HeadGroup] = []  # groups outside the union-find: the heads of attention blocks

    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def input_of(self, node, where: str):
        arg = node.args[0] if node.args else None
        c = self.chan.get(arg) if isinstance(arg, torch.fx.Node) else None
        return None if c is not None and c[0] in ("attr", "tuple") else c

    def place(self, v: int, param: str, axis: int, where: str) -> None:
        """`param`'s axis carries the units of v (a tied alias counts as its first name: one tensor, one place)."""
        self.vars.place(v, self.ties.get(param, param), axis, where)

    def consume(self, node, c, param: str, axis: int, where: str, n_in: int) -> None:
        """The input axis `axis` of `param` reads the units of c (blocked units: the weight is viewed); the
        node's input is where activation matching reads those units."""
        if c is None:
            return
        param = self.ties.get(param, param)
        v, _, block = c
        self.sites.setdefault(v, []).append(Site(node.args[0].name, c[1], block))
        if block > 1:
            shape = tuple(self.state[param].shape)
            if axis != len(shape) - 1:
                raise UnsupportedModelError(f"{where}: reads flattened units on an axis other than the last; {HAND}")
            self.views[param] = shape[:-1] + (n_in // block, block)
        self.place(v, param, axis, where)

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.chan[node] = self.visit(node)

    def visit(self, node: torch.fx.Node):
        where = f"node {node.name!r} ({node.op} {getattr(node.target, '__name__', node.target)})"
        shp = self.shape(node)
        if node.op == "placeholder":
            return None
        if node.op == "output":
            self.fix_all(node.args)
            return None
        if node.op == "get_attr":
            return ("attr", node.target) if node.target in self.state else None
        if node.op == "call_module":
            return self.module(node, self.modules[node.target], where, shp)
        if node.op == "call_function":
            return self.function(node, node.target, where, shp)
        if node.op == "call_method":
            return self.method(node, node.target, where, shp)
        raise UnsupportedModelError(f"{where}: not understood; {HAND}")

    def fix_all(self, arg) -> None:
        if isinstance(arg, torch.fx.Node):
            c = self.chan.get(arg)
            if c is not None and c[0] == "tuple":
                for part in c[1]:
                    if part is not None:
                        self.vars.fix(part[0])
            elif c is not None and c[0] != "attr":
                self.vars.fix(c[0])
        elif isinstance(arg, (tuple, list)):
            for a in arg:
                self.fix_all(a)
        elif isinstance(arg, dict):
            for a in arg.values():
                self.fix_all(a)

    def module(self, node, m: nn.Module, where: str, shp):
        name = node.target
        p = f"{name}." if name else ""
        where = f"module {name!r} ({type(m).__name__})"
        c = self.input_of(node, where)
        if isinstance(m, nn.Linear):
            if c is not None and c[1] != len(self.shape(node.args[0])) - 1:
                raise UnsupportedModelError(f"{where}: its input's units are not on the last axis; {HAND}")
            self.consume(node, c, p + "weight", 1, where, m.in_features)
            return self.create(m.out_features, name, [(p + "weight", 0)] + ([(p + "bias", 0)] if m.bias is not None
                                                                            else []), len(shp) - 1)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if m.groups != 1:
                raise UnsupportedModelError(f"{where}: grouped convolution (groups={m.groups}); {HAND}")
            if c is not None and c[1] != 1:
                raise UnsupportedModelError(f"{where}: its input's units are not on axis 1; {HAND}")
            self.consume(node, c, p + "weight", 1, where, m.in_channels)
            return self.create(m.out_channels, name, [(p + "weight", 0)] + ([(p + "bias", 0)] if m.bias is not None
                                                                            else []), 1)
        if isinstance(m, nn.Embedding):
            return self.create(m.embedding_dim, name, [(p + "weight", 1)], len(shp) - 1)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # noqa: SLF001
            if c is None:
                return None  # normalises the model's input features, which stay in place
            if c[1] != 1 or c[2] != 1:
                raise UnsupportedModelError(f"{where}: its input's units are not on axis 1; {HAND}")
            for t in ("weight", "bias", "running_mean", "running_var"):
                if p + t in self.state:
                    self.place(c[0], p + t, 0, where)
            return c
        if isinstance(m, nn.LayerNorm):
            if c is None:
                return None
            k = c[1] - (len(shp) - len(m.normalized_shape))
            if k >= 0:
                if c[2] != 1:
                    raise UnsupportedModelError(f"{where}: normalises flattened units; {HAND}")
                for t in ("weight", "bias"):
                    if p + t in self.state:
                        self.place(c[0], p + t, k, where)
            return c
        if isinstance(m, (nn.TransformerEncoder, nn.TransformerEncoderLayer)):
            return self.encoder(m, p, c, where, shp)
        if isinstance(m, nn.MultiheadAttention):
            return self.attention(node, m, p, where)
        if isinstance(m, ELEMENTWISE_MODULES):
            return c
        if isinstance(m, POOL_MODULES):
            if c is not None and c[1] != 1:
                raise UnsupportedModelError(f"{where}: pools over the units' axis; {HAND}")
            return c
        if isinstance(m, nn.Flatten):
            return self.reshape(node, c, where, shp)
        raise UnsupportedModelError(f"auto_spec cannot handle {where}; {HAND}")

    def create(self, size: int, name: str, places: list, axis: int):
        v = self.vars.new(size, name)
        for param, ax in places:
            self.place(v, param, ax, f"module {name!r}")
        return (v, axis, 1)

    def binary(self, node, where: str, shp):
        """Elementwise sum/difference/product: tensors whose units meet become one group; a parameter added to
        units is permuted with them; the model's input (or any untracked tensor) added to units pins them."""
        cs = [(a, self.chan.get(a)) for a in node.args[:2] if isinstance(a, torch.fx.Node) and self.shape(a)]
        tracked = [(a, c) for a, c in cs if c is not None and c[0] != "attr"]
        if not tracked:
            return None
        v, axis, block = tracked[0][1]
        axis_out = axis + len(shp) - len(self.shape(tracked[0][0]))
        for a, c in tracked[1:]:
            if c[2] != block or c[1] + len(shp) - len(self.shape(a)) != axis_out:
                raise UnsupportedModelError(f"{where}: combines units on different axes; {HAND}")
            v = self.vars.union(v, c[0], where)
        for a, c in cs:
            s = self.shape(a)
            k = axis_out - (len(shp) - len(s))
            if k < 0 or s[k] == 1:
                continue  # broadcast along the units: nothing to permute
            if c is not None and c[0] == "attr":  # a parameter added to the units (e.g. a learned position table)
                self.place(v, c[1], k, where)
            elif c is None:
                self.vars.fix(v)  # the model's input or an untracked tensor: the units must stay in place
        return (v, axis_out, block)

    def function(self, node, fn, where: str, shp):
        if fn in BINARY:
            return self.binary(node, where, shp)
        c = self.input_of(node, where) if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if fn in ELEMENTWISE_FUNCTIONS:
            return c
        if fn in POOL_FUNCTIONS:
            if c is not None and c[1] != 1:
                raise UnsupportedModelError(f"{where}: pools over the units' axis; {HAND}")
            return c
        if fn in (torch.flatten, torch.reshape):
            return self.reshape(node, c, where, shp)
        if fn in (torch.mean, torch.sum, torch.amax):
            return self.reduce(node, c, where, shp)
        if fn is getattr:
            return None
        held = self.chan.get(node.args[0]) if fn is operator.getitem else None
        if held is not None and held[0] == "tuple" and isinstance(node.args[1], int):
            return held[1][node.args[1]]  # an element of a module's tuple output (attention: output, weights)
        if fn is operator.getitem and (shp is None):
            return None
        raise UnsupportedModelError(f"auto_spec cannot handle {where}; {HAND}")

    def method(self, node, name: str, where: str, shp):
        if name in ("size", "dim"):
            return None
        if name in ("add", "sub", "mul", "add_", "mul_"):
            return self.binary(node, where, shp)
        c = self.input_of(node, where)
        if name in PASS_METHODS:
            return c
        if name in RESHAPE_METHODS:
            return self.reshape(node, c, where, shp)
        if name in ("transpose", "swapaxes"):
            if c is None:
                return None  # the model's input (or a tensor without units) transposed
            if c[2] != 1:
                raise UnsupportedModelError(f"{where}: transposes flattened units; {HAND}")
            n = len(shp)
            dims = list(node.args[1:3]) + [node.kwargs[k] for k in ("dim0", "dim1", "axis0", "axis1")
                                           if k in node.kwargs]
            d0, d1 = (int(x) % n for x in dims[:2])
            return (c[0], {d0: d1, d1: d0}.get(c[1], c[1]), c[2])  # the units' axis follows the swap
        if name in REDUCE_METHODS:
            return self.reduce(node, c, where, shp)
        raise UnsupportedModelError(f"auto_spec cannot handle {where}; {HAND}")

    def reshape(self, node, c, where: str, shp):
        """A flatten/reshape that merges the units' axis with the axes after it (or keeps it) is followed."""
        if c is None:
            return None
        before = self.shape(node.args[0])
        v, axis, block = c
        prefix = before[:axis]
        if tuple(shp[:axis]) == tuple(prefix) and len(shp) == axis + 1:
            rest = 1
            for s in before[axis + 1:]:
                rest *= s
            return (v, axis, block * rest)
        if tuple(shp) == tuple(before):
            return c
        raise UnsupportedModelError(f"{where}: reshapes {before} to {tuple(shp)} across the units' axis {axis}; {HAND}")

    def reduce(self, node, c, where: str, shp):
        if c is None:
            return None
        before = self.shape(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dims is None:
            return None  # a reduction over everything: permutation-invariant
        dims = [d % len(before) for d in ((dims,) if isinstance(dims, int) else dims)]
        if c[1] in dims:
            return None  # summed over the units: invariant
        keep = node.kwargs.get("keepdim", False) or (len(node.args) > 2 and node.args[2])
        return (c[0], c[1] - (0 if keep else sum(d < c[1] for d in dims)), c[2])


def auto_spec(model: nn.Module, sample, concrete_args: dict | None = None) -> ModuleSpec:
    """The permutation spec of a torch.fx-traceable model (see the module docstring) from one sample batch.

    sample: the model's input — a tensor, a tuple of positional inputs, or a dict of keyword inputs.
    Returns a ModuleSpec (groups named after the layer that creates their units; a residual stream after the
    first layer that writes it; a tied tensor — e.g. input and output embeddings — named once, under its first name,
    its uses through every name joined). Raises UnsupportedModelError naming what it could not follow, and
    ValueError naming `sample` when the model cannot run on it.
    """
    try:
        gm = torch.fx.symbolic_trace(model, concrete_args=concrete_args)  # torch.nn modules stay whole (leaves)
    except Exception as exc:  # noqa: BLE001 - any tracing failure: say what to do instead
        raise UnsupportedModelError(f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); {HAND}") from None
    args, kwargs = (sample, {}) if isinstance(sample, tuple) else ((), sample) if isinstance(sample, dict) \
        else ((sample,), {})
    was = model.training
    gm.eval()
    try:
        with torch.no_grad():
            if kwargs:
                names = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
                args = tuple(kwargs[n] for n in names if n in kwargs)
            try:
                gm(*args)  # a sample the model cannot take: say so (ShapeProp would print a traceback first)
            except Exception as exc:  # noqa: BLE001 - any failure of the forward pass
                lines = str(exc).strip().splitlines()
                raise ValueError(f"sample: {type(model).__name__} cannot run on it ({type(exc).__name__}"
                                 f"{': ' + lines[0][:200] if lines else ''}); give one batch of the model's own "
                                 "inputs") from None
            ShapeProp(gm).propagate(*args)
    finally:
        gm.train(was)
    state = dict(model.state_dict())
    ties = tied_names(model)
    tr = _Tracer(gm, state, ties)
    tr.run()
    groups, sites, notes = [], {}, []
    roots: dict[int, list[tuple[str, int]]] = {}
    for (param, axis), v in sorted(tr.vars.places.items()):
        roots.setdefault(tr.vars.find(v), []).append((param, axis))
    for r, places in roots.items():
        members = [v for v in range(len(tr.vars.parent)) if tr.vars.find(v) == r]
        name = tr.vars.creator[r] + (" (residual)" if len(members) > 1 else "")
        if tr.vars.fixed[r]:
            notes.append(f"units of {tr.vars.creator[r]!r} stay in place (they reach the model's output)")
            continue
        groups.append(UnitGroup(name, tr.vars.size[r], tuple(Axis(p, a + 1) for p, a in places)))
        sites[name] = [s for v in members for s in tr.sites.get(v, [])]
    groups += tr.extra
    return ModuleSpec(PermutationSpec(tuple(groups), tuple(notes)), tr.views, sites, gm, ties)



def tied_names(model: nn.Module) -> dict[str, str]:
    """{alias: first name} of every parameter or buffer of the state dict a module holds under several names (tied
    weights); the first name is the one named_parameters() / named_buffers() keep."""
    state = model.state_dict()
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if n in state:
            if id(t) in first:
                out[n] = first[id(t)]
            else:
                first[id(t)] = n
    return out
