"""Graph rewrites of exported students that change how fast ONNX Runtime runs them, not what
they compute.

PyTorch exports `pixel_unshuffle` (the space-to-depth fold of the folded students) as Reshape /
six-dimensional Transpose / Reshape, in channel order `c * b^2 + by * b + bx`. ONNX Runtime runs
that Transpose through its generic strided path: at 960x282 (one 1080p band) about 4 ms of a
band's 21-38 ms, against 0.25 ms for the native SpaceToDepth operator (measured 2026-12-07, one
thread; docs/research/2026-12-07-sr-bands.md). SpaceToDepth orders channels the other way
(`(by * b + bx) * C + c`), so the rewrite permutes the input channels of the convolutions that
read the fold instead: the same sums in another order, the same output to float rounding (int8
convolutions: exactly).

The permuted weights keep their names; the file says which were permuted (metadata
`nerve.s2d_permuted`) so `load_onnx_weights` can hand PyTorch its own order back.

A folded student crops its output back to the input's size (odd sizes are padded to even) with
one Slice per axis, each a full copy of the output (0.7 ms a 1080p band); `merged_slices` makes
them one Slice over both axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# metadata key: comma-separated initializer names whose axis 1 is in SpaceToDepth order
PERMUTED_KEY = "nerve.s2d_permuted"

# ops a fold passes through on its way to a convolution without its channels moving, when their
# scale and zero point are per tensor
_PASS_THROUGH = {"QuantizeLinear", "DequantizeLinear"}


def dcr_from_crd(channels: int, block: int) -> np.ndarray:
    """`perm[j]`: the pixel_unshuffle (CRD) channel that SpaceToDepth (DCR) puts at channel j."""
    b2 = block * block
    j = np.arange(channels * b2)
    return (j % channels) * b2 + j // channels


def crd_from_dcr(weight: np.ndarray, block: int) -> np.ndarray:
    """A weight whose input channels (axis 1) are in SpaceToDepth order, back in PyTorch's."""
    out = np.empty_like(weight)
    out[:, dcr_from_crd(weight.shape[1] // (block * block), block)] = weight
    return out


def permuted_weights(model: onnx.ModelProto) -> list[str]:
    """The initializers whose input-channel axis `native_space_to_depth` permuted."""
    for p in model.metadata_props:
        if p.key == PERMUTED_KEY:
            return [n for n in p.value.split(",") if n]
    return []


def native_space_to_depth(model: onnx.ModelProto) -> int:
    """Replaces every exported pixel_unshuffle chain in `model` (in place) by SpaceToDepth and
    permutes the convolutions that read it. Returns the chains replaced. A chain whose readers
    are not all convolutions with constant weights is left as it is."""
    g = model.graph
    consts = _constants(g)
    inits = {i.name: i for i in g.initializer}
    producers, readers = _index(g)
    permuted = set(permuted_weights(model))
    replaced = 0
    for t in list(g.node):
        if t.op_type != "Transpose" or _attr(t, "perm") != [0, 1, 3, 5, 2, 4]:
            continue
        chain = _unshuffle_chain(t, producers, readers, consts)
        if chain is None:
            continue
        first, last, block = chain
        source = first.input[0]
        convs = _conv_readers(last.output[0], readers, producers, inits, consts)
        if convs is None:
            continue
        for conv in convs:
            w = _weight_initializer(conv, producers, inits)
            weight = numpy_helper.to_array(inits[w])
            perm = dcr_from_crd(weight.shape[1] // (block * block), block)
            inits[w].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weight[:, perm]), w))
            permuted.add(w)
        # the fold's output name stays, now made by one node from the chain's input
        s2d = helper.make_node("SpaceToDepth", [source], [last.output[0]], name=f"{t.name}_space_to_depth", blocksize=block)
        dead = _chain_nodes(first, last, producers)
        at = min(list(g.node).index(n) for n in dead)
        for n in dead:
            g.node.remove(n)
        g.node.insert(at, s2d)
        producers, readers = _index(g)
        replaced += 1
    if replaced:
        # the chains' shape constants are read by nothing now
        _drop_unread_constants(g)
        for p in list(model.metadata_props):
            if p.key == PERMUTED_KEY:
                model.metadata_props.remove(p)
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, PERMUTED_KEY: ",".join(sorted(permuted))})
    return replaced


def merged_slices(model: onnx.ModelProto) -> int:
    """Replaces (in place) a Slice whose output only a second Slice reads, each over other axes
    with constant starts, axes and steps, by one Slice over all of them (the ends, which depend
    on the input's size, are concatenated in the graph). Returns the pairs merged."""
    g = model.graph
    merged = 0
    while True:
        consts = _constants(g)
        producers, readers = _index(g)
        pair = None
        for b in g.node:
            a = producers.get(b.input[0]) if b.op_type == "Slice" else None
            if a is None or a.op_type != "Slice" or len(readers.get(a.output[0], [])) != 1:
                continue
            if len(a.input) != 5 or len(b.input) != 5 or a.output[0] in {o.name for o in g.output}:
                continue
            fixed = [consts.get(n.input[i]) for n in (a, b) for i in (1, 3, 4)]
            if any(v is None or v.ndim != 1 for v in fixed):
                continue
            # other axes, counted from the front (a negative axis could name the other's)
            axes_a, axes_b = fixed[1].tolist(), fixed[4].tolist()
            if min(axes_a + axes_b) < 0 or set(axes_a) & set(axes_b):
                continue
            pair = (a, b, fixed)
            break
        if pair is None:
            return merged
        a, b, fixed = pair
        name = b.name or b.output[0]
        const = lambda tag, v: helper.make_node(  # noqa: E731
            "Constant", [], [f"{name}_{tag}"], value=numpy_helper.from_array(np.asarray(v, dtype=np.int64), f"{name}_{tag}"))
        nodes = [
            const("starts", np.concatenate([fixed[0], fixed[3]])),
            const("axes", np.concatenate([fixed[1], fixed[4]])),
            const("steps", np.concatenate([fixed[2], fixed[5]])),
            helper.make_node("Concat", [a.input[2], b.input[2]], [f"{name}_ends"], name=f"{name}_ends", axis=0),
            helper.make_node("Slice", [a.input[0], f"{name}_starts", f"{name}_ends", f"{name}_axes", f"{name}_steps"],
                             [b.output[0]], name=f"{name}_merged"),
        ]
        # where the second Slice was: everything either read comes before it
        at = list(g.node).index(b)
        for k, n in enumerate(nodes):
            g.node.insert(at + k, n)
        g.node.remove(a)
        g.node.remove(b)
        _drop_unread_constants(g)
        merged += 1


def speed_rewrites(model: onnx.ModelProto) -> int:
    """Every rewrite of this module, in place; the number of changes."""
    return native_space_to_depth(model) + merged_slices(model)


def rewrite_file(path: Path) -> int:
    """`speed_rewrites` on an ONNX file, written back in place when anything changed."""
    model = onnx.load(str(path))
    n = speed_rewrites(model)
    if n:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return n


def _index(g: onnx.GraphProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """Each tensor's producing node and the nodes that read it."""
    producers = {o: n for n in g.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return producers, readers


def _drop_unread_constants(g: onnx.GraphProto) -> None:
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in read]:
        g.node.remove(n)


def _constants(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return list(helper.get_attribute_value(a)) if a.type == onnx.AttributeProto.INTS else helper.get_attribute_value(a)
    return None


def _only_reader(name: str, readers: dict[str, list[onnx.NodeProto]]) -> onnx.NodeProto | None:
    r = readers.get(name, [])
    return r[0] if len(r) == 1 else None


def _unshuffle_chain(t, producers, readers, consts) -> tuple[onnx.NodeProto, onnx.NodeProto, int] | None:
    """The nodes from a 4-D tensor to its fold around Transpose `t`, as PyTorch exports
    pixel_unshuffle (opset 17): Unsqueeze(3), Reshape [0,0,-1,b,0], Reshape [0,0,0,0,-1,b],
    Transpose, Reshape [0,-1,1,1,0,0], Squeeze [2,3]. (first, last, block) or None."""
    r2 = producers.get(t.input[0])
    r1 = producers.get(r2.input[0]) if r2 is not None and r2.op_type == "Reshape" else None
    un = producers.get(r1.input[0]) if r1 is not None and r1.op_type == "Reshape" else None
    r3 = _only_reader(t.output[0], readers)
    sq = _only_reader(r3.output[0], readers) if r3 is not None and r3.op_type == "Reshape" else None
    if un is None or un.op_type != "Unsqueeze" or sq is None or sq.op_type != "Squeeze":
        return None
    shape = lambda n: consts.get(n.input[1]) if len(n.input) > 1 else None  # noqa: E731
    s1, s2, s3 = shape(r1), shape(r2), shape(r3)
    axes_un, axes_sq = shape(un), shape(sq)
    if any(v is None for v in (s1, s2, s3, axes_un, axes_sq)):
        return None
    block = int(s1[3])
    if (
        axes_un.tolist() != [3] or s1.tolist() != [0, 0, -1, block, 0] or s2.tolist() != [0, 0, 0, 0, -1, block]
        or s3.tolist() != [0, -1, 1, 1, 0, 0] or axes_sq.tolist() != [2, 3] or block < 2
    ):
        return None
    # every intermediate read only by the next node of the chain
    for n in (un, r1, r2):
        if len(readers.get(n.output[0], [])) != 1:
            return None
    return un, sq, block


def _chain_nodes(first, last, producers) -> list[onnx.NodeProto]:
    nodes, n = [last], last
    while n is not first:
        n = producers[n.input[0]]
        nodes.append(n)
    return nodes


def _per_tensor(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
    return all(consts.get(i) is not None and consts[i].size == 1 for i in node.input[1:3])


def _conv_readers(name, readers, producers, inits, consts) -> list[onnx.NodeProto] | None:
    """The convolutions that read `name` through per-tensor Q/DQ, or None if anything else does
    (another reader would see channels in the new order)."""
    convs: list[onnx.NodeProto] = []
    for r in readers.get(name, []):
        if r.op_type == "Conv" and r.input[0] == name and _weight_initializer(r, producers, inits) is not None:
            convs.append(r)
        elif r.op_type in _PASS_THROUGH and r.input[0] == name and _per_tensor(r, consts):
            more = _conv_readers(r.output[0], readers, producers, inits, consts)
            if more is None:
                return None
            convs.extend(more)
        else:
            return None
    return convs or None


def _weight_initializer(conv, producers, inits) -> str | None:
    """The initializer holding `conv`'s weights: its input directly, or through a
    DequantizeLinear whose scale is per tensor or per output channel (axis 0)."""
    w = conv.input[1]
    if w in inits:
        return w
    dq = producers.get(w)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits and (_attr(dq, "axis") in (None, 0)):
        return dq.input[0]
    return None
