"""C emitters of the Arm DSP kernels; each returns None where its kernel does not apply.

The portable emitters (emit.py) call these first on cores with the DSP extension and fall back
to the portable kernel when they decline (a plan without DSP-sized scratch, weights the packing
cannot hold, accumulators outside int32, a depth multiplier above 1); a declining emitter says
why in `ctx.portable_reason`, which emit.py copies into the step's LayerCode.

Requantisation: the one-multiply constants of codegen/dsp.py when they can be proven exact
(MCUFLOW_DSP_RQ_FAST), else a general path on the same SIMD accumulation: TFLite's
MultiplyByQuantizedMultiplier itself for CONV_2D and DEPTHWISE_CONV_2D (EXACT), and for
FULLY_CONNECTED the one-multiply formula on accumulators clamped to the unsaturated range
(CLAMPED) or, failing that, LiteRT's double-precision round itself (SCALED).
"""

from __future__ import annotations

import functools

import numpy as np

from mcuflow.codegen import dsp
from mcuflow.codegen.context import EmitContext, LayerCode
from mcuflow.hw.kernels import (
    FC_FEW_UNITS,
    FC_SHORT_DEPTH,
    dsp_depthwise_plane,
    fully_connected_dsp_kernel,
)
from mcuflow.hw.layouts import (
    GATHER_VALUES,
    GATHER_WORDS,
    DwPlane,
    dsp_gather_mode,
    dsp_groups,
    dsp_padded_channels,
)
from mcuflow.ir.graph import Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import INT32_MIN
from mcuflow.memory.plan import InPlace
from mcuflow.memory.scratch import scratch_bytes
from mcuflow.quant.fixedpoint import multiply_by_quantized_multiplier_array
from mcuflow.ref.conv2d import ConvParams, prepare_conv
from mcuflow.ref.elementwise import prepare_add
from mcuflow.ref.fully_connected import FullyConnectedParams, prepare_fully_connected

DSP_HEADER = "mcuflow_dsp.h"
DSP_SUFFIX = "_dsp"
SCRATCH_ALIGNMENT = 8  # LDRD
DOUBLED_LIMIT = 1 << 30  # |acc| below this keeps 2 * acc inside int32
DW_WORDS = 12  # MCUFLOW_DSP_DW_WORDS
RQ_FAST, RQ_EXACT, RQ_CLAMPED, RQ_SCALED = 0, 1, 2, 3  # MCUFLOW_DSP_RQ_*
DSP_KINDS = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED,
                       OpKind.ADD, OpKind.SUB})
"""Op kinds with a DSP kernel: on a DSP core, a step of these kinds running a portable kernel
has a `portable_reason`."""
DSP_KINDS |= {OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM}  # mcuflow_lstm_dsp_s8 (codegen/lstm_dsp.py)


def uses_dsp(kernels: frozenset[str] | set[str]) -> bool:
    """True when a kernel stem is a DSP kernel (the model then includes DSP_HEADER)."""
    return any(stem.endswith(DSP_SUFFIX) for stem in kernels)


def portable_reason(ctx: EmitContext) -> str | None:
    """Why a step of a DSP core runs a portable kernel, after its emitter ran.

    None when no DSP kernel exists for the step's op kind (or none was declined).
    """
    if ctx.op.kind not in DSP_KINDS:
        return None
    if ctx.portable_reason is not None:
        return ctx.portable_reason
    if any(ctx.tensor(name).codebook is not None for name in ctx.op.inputs):
        return "weights stored as a codebook are decoded for the portable kernel"
    return None


def _decline(ctx: EmitContext, reason: str) -> None:
    """Record why the DSP kernel does not apply; the emitter then returns None."""
    ctx.portable_reason = reason


UNPACKABLE = ("weight -128 in a channel whose pair partner has a negative weight in the same "
              "column (the int16 pair packing cannot hold it)")
WIDE_SHIFT = "a requantisation shift of 32 or more"


def _no_scratch(ctx: EmitContext) -> str:
    """Why _scratch declined."""
    if ctx.step.scratch is None:
        return "the plan gives the step no scratch (plan with the DSP scratch rules)"
    buffer = ctx.plan.buffers[ctx.step.scratch]
    needed = scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True)
    if buffer.size < needed:
        return f"the planned scratch holds {buffer.size} bytes, the DSP kernel needs {needed}"
    return f"the planned scratch is not {SCRATCH_ALIGNMENT}-byte aligned"


def _scratch(ctx: EmitContext, needed: int, kind: str) -> str | None:
    """A `kind` * pointer to the step's planned scratch when it holds `needed` aligned bytes."""
    if ctx.step.scratch is None:
        return None
    buffer = ctx.plan.buffers[ctx.step.scratch]
    if buffer.size < needed or buffer.offset % SCRATCH_ALIGNMENT:
        return None
    return f"({kind} *){ctx.scratch()}"


def _bias(ctx: EmitContext, units: int) -> np.ndarray:
    if len(ctx.op.inputs) > 2:
        return ctx.input(2).data.astype(np.int64).reshape(-1)
    return np.zeros(units, np.int64)


def _folded(ctx: EmitContext, matrix: np.ndarray, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum(weights[o]) per output channel (int64)."""
    return _bias(ctx, len(matrix)) + input_offset * matrix.astype(np.int64).sum(axis=1)


def _int32(span: dsp.Domain, limit: int = 1 << 31, live_only: bool = True) -> bool:
    """True when every reachable accumulator is in [-limit, limit) (all-zero channels aside)."""
    live = ~span.constant if live_only else np.ones(len(span.low), bool)
    return bool((span.low[live] >= -limit).all() and (span.high[live] < limit).all())


def _accumulators(span: dsp.Domain, doubled: bool = False) -> str:
    what = "twice the accumulator" if doubled else "the accumulator"
    return f"{what} can leave int32 (range {int(span.low.min())}..{int(span.high.max())})"


def _padded(values: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.int64)
    out[:len(values)] = values
    return out


def _define(ctx: EmitContext, ctype: str, stem: str, fields: dict[str, int | str]) -> str:
    return ctx.struct(ctype, stem, fields)


def _requant(ctx: EmitContext, requant: dsp.FastRequant, bias: np.ndarray, length: int,
             act: tuple[int, int], doubled: bool = False) -> str:
    """Define the mcuflow_dsp_requant_t (bias padded to `length`); returns its symbol."""
    name = ctx.op.name
    what = "doubled bias + input offset * weight sums" if doubled else (
        "bias + input offset * weight sums")
    bias_symbol = ctx.constant("bias", "int32_t", _padded(bias, length).astype(np.int32),
                               f"{name}: {what} (0 for all-zero channels)")
    words = ctx.constant("rq", "int32_t", requant.words(doubled),
                         f"{name}: multiplier, shift, addend low, addend high per channel")
    fields: dict[str, int | str] = {"bias": bias_symbol, "rq": words}
    if requant.shared:
        fields["negative"] = requant.negative
    else:
        fields["negatives"] = ctx.constant(
            "negatives", "int32_t", _padded(np.array(requant.negatives), length).astype(np.int32),
            f"{name}: added when the accumulator is negative, per channel")
    return _define(ctx, "mcuflow_dsp_requant_t", "dsprq", {
        **fields, "act_min": act[0], "act_max": act[1]})


def _general_requant(ctx: EmitContext, mode: int, bias: np.ndarray, length: int,
                     act: tuple[int, int], words: np.ndarray | None = None,
                     scales: tuple[float, ...] | None = None, output_offset: int = 0) -> str:
    """Define the mcuflow_dsp_requant_t of a general mode (EXACT, CLAMPED or SCALED)."""
    name = ctx.op.name
    bias_symbol = ctx.constant("bias", "int32_t", _padded(bias, length).astype(np.int32),
                               f"{name}: bias + input offset * weight sums")
    fields: dict[str, int | str] = {"bias": bias_symbol, "rq": "NULL"}
    if words is not None:
        layout = ("multiplier, left shift, right shift, output offset" if mode == RQ_EXACT
                  else "multiplier, shift, addend low, addend high, low, high, left shift, "
                  "negative term")
        fields["rq"] = ctx.constant("rq", "int32_t", words, f"{name}: {layout} per channel")
    fields |= {"act_min": act[0], "act_max": act[1], "mode": mode}
    if scales is not None:
        fields["scales"] = ctx.constant("scale", "double", np.array(scales, np.float64),
                                        f"{name}: double-precision output scales")
        fields["output_offset"] = output_offset
        fields["scaled"] = "mcuflow_dsp_round_scaled"
    return _define(ctx, "mcuflow_dsp_requant_t", "dsprq", fields)


def _conv_requant(params: ConvParams, span: dsp.Domain, negative: int | None = None
                  ) -> dsp.FastRequant | None:
    return _requant_of(params.multipliers, params.shifts, params.output_offset, params.act_min,
                       params.act_max, negative, span.low.dtype.str, span.low.tobytes(),
                       span.high.tobytes())


@functools.lru_cache(maxsize=256)
def _requant_of(multipliers: tuple[int, ...], shifts: tuple[int, ...], output_offset: int,
                act_min: int, act_max: int, negative: int | None, dtype: str, low: bytes,
                high: bytes) -> dsp.FastRequant | None:
    """fast_requant of a conv's constants, computed once per distinct layer.

    A patch stage repeats each layer once per patch.
    """
    span = dsp.Domain(np.frombuffer(low, dtype), np.frombuffer(high, dtype))
    return dsp.fast_requant(dsp.conv_function(multipliers, shifts, output_offset), span,
                            dsp.conv_natural(multipliers, shifts), act_min, act_max, negative)


def _doubled_requant(params: ConvParams, span: dsp.Domain) -> dsp.FastRequant | None:
    """Constants for the depthwise kernels' doubled accumulators.

    Their sign correction can only subtract 2^31 (or nothing, preferred).
    """
    if not _int32(span, DOUBLED_LIMIT):
        return None
    requant = _conv_requant(params, span)
    if requant is not None and requant.negative == 0:
        return requant
    return _conv_requant(params, span, INT32_MIN)


def _depthwise_words(ctx: EmitContext, params: ConvParams, span: dsp.Domain
                     ) -> tuple[np.ndarray, int, bool] | None:
    """The depthwise kernels' requantisation words [channels, 4], `ties` and `exact`.

    The fast words of the doubled accumulator, else TFLite's (EXACT); None (declined) when
    twice an accumulator can leave int32.
    """
    requant = _doubled_requant(params, span)
    if requant is not None:
        return requant.words(doubled=True), int(requant.negative != 0), False
    if not _int32(span, DOUBLED_LIMIT, live_only=False):  # all-zero channels keep their bias
        return _decline(ctx, _accumulators(span, doubled=True))
    words = dsp.exact_words(params.multipliers, params.shifts, params.output_offset)
    if words is None:
        return _decline(ctx, WIDE_SHIFT)
    return words, 0, True


def _matrix(ctx: EmitContext, packed: np.ndarray, rows: int, depth: int, chunk: int,
            gather: int, layout: str) -> str:
    weights = ctx.constant("weights", "int32_t", packed.view(np.int32),
                           f"{ctx.op.name}: int8 weights packed {layout}")
    return _define(ctx, "mcuflow_dsp_matrix_t", "matrix", {
        "weights": f"(const uint32_t *){weights}", "rows": rows, "depth": depth,
        "groups": dsp_groups(depth), "chunk_groups": chunk, "gather": gather})


def _code(ctx: EmitContext, call: str, stem: str) -> LayerCode:
    return LayerCode([call], ctx.definitions, frozenset({stem}))


def conv2d(ctx: EmitContext, window: str) -> LayerCode | None:
    """CONV_2D as a 2 x 2 blocked matrix product over int16 im2col columns."""
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    columns = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                       "mcuflow_word_t")
    in_c = x.shape[3]
    gather = dsp_gather_mode(in_c, weights.shape[2], ctx.op.attrs.dilation_w)
    matrix = weights.data.reshape(weights.shape[0], -1)
    padding = ((0, 0),) * 3 + ((0, dsp_padded_channels(in_c) - in_c),)
    columns_matrix = np.pad(weights.data, padding).reshape(weights.shape[0], -1)
    lanes = dsp.NATURAL_LANES if gather == GATHER_VALUES else dsp.GATHER_WORDS_LANES
    packed = dsp.pack_pairs(columns_matrix, lanes)
    if columns is None:
        return _decline(ctx, _no_scratch(ctx))
    if packed is None:
        return _decline(ctx, UNPACKABLE)
    params = prepare_conv(x, weights, out, ctx.op.attrs)
    bias = _folded(ctx, matrix, params.input_offset)
    span = dsp.domain(matrix, bias)
    if not _int32(span, live_only=False):
        return _decline(ctx, _accumulators(span))
    rows = len(matrix)
    act = (params.act_min, params.act_max)
    requant = _conv_requant(params, span)
    if requant is not None:
        q = _requant(ctx, requant, np.where(span.constant, 0, bias), rows + rows % 2, act)
    else:
        words = dsp.exact_words(params.multipliers, params.shifts, params.output_offset)
        if words is None:
            return _decline(ctx, WIDE_SHIFT)
        q = _general_requant(ctx, RQ_EXACT, bias, rows + rows % 2, act, words)
    m = _matrix(ctx, packed, rows, columns_matrix.shape[1], dsp.chunk_groups(columns_matrix),
                gather, "in channel pairs")
    call = (f"mcuflow_conv2d_dsp_s8(&{window}, &{m}, &{q}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])}, {columns});")
    return _code(ctx, call, "mcuflow_conv_dsp")


def fully_connected(ctx: EmitContext) -> LayerCode | None:
    """FULLY_CONNECTED as a matrix-vector product, four output channels per input row pass.

    Small layers keep the input row or the accumulators in registers instead (_fc_small).
    """
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    params = prepare_fully_connected(x, weights, out, ctx.op.attrs)
    units, depth = weights.shape
    if params.weights_offset != 0:
        return _decline(ctx, f"weights zero point {-params.weights_offset} (the DSP kernel "
                        "takes symmetric weights)")
    bias = _folded(ctx, weights.data, params.input_offset)
    span = dsp.domain(weights.data, bias)
    if not _int32(span, live_only=False):
        return _decline(ctx, _accumulators(span))
    requant = _fc_requant(params, span)
    if requant is not None and (small := _fc_small(ctx, params, bias, span, requant)):
        return small
    row = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                   "mcuflow_word_t")
    packed = dsp.pack_quads(weights.data)
    if row is None:
        return _decline(ctx, _no_scratch(ctx))
    if packed is None:
        return _decline(ctx, UNPACKABLE)
    quads = -(-units // 4) * 4
    act = (params.act_min, params.act_max)
    if requant is not None:
        q = _requant(ctx, requant, np.where(span.constant, 0, bias), quads, act)
    else:
        requantize = dsp.scale_function(params.scales, params.output_offset)
        clamped = dsp.clamped_requant(requantize, span, params.scales, *act)
        q = (_general_requant(ctx, RQ_CLAMPED, bias, quads, act, clamped.words())
             if clamped is not None else
             _general_requant(ctx, RQ_SCALED, bias, quads, act, scales=params.scales,
                              output_offset=params.output_offset))
    m = _matrix(ctx, packed, units, depth, dsp.chunk_groups(_padded_rows(weights, quads)),
                GATHER_WORDS, "in groups of two channel pairs")
    call = (f"mcuflow_fully_connected_dsp_s8({x.size // depth}, &{m}, &{q}, "
            f"{ctx.pointer(ctx.op.inputs[0])}, {ctx.pointer(ctx.op.outputs[0])}, {row});")
    return _code(ctx, call, "mcuflow_conv_dsp")


FEW_ROWS = 2 * FC_FEW_UNITS  # MCUFLOW_DSP_FEW_ROWS


def _fc_small(ctx: EmitContext, params: FullyConnectedParams, bias: np.ndarray,
              span: dsp.Domain, requant: dsp.FastRequant) -> LayerCode | None:
    """A small layer, in registers: int16 weights, requantisation words per unit.

    The input row or the accumulators of every unit, as hw.kernels.fully_connected_dsp_kernel
    chooses; None for other layers.
    """
    function = fully_connected_dsp_kernel(ctx.graph, ctx.op)
    if function == "mcuflow_fully_connected_dsp_s8":
        return None
    short = function == "mcuflow_fully_connected_short_dsp_s8"
    layout = "per unit" if short else "for all units"
    records = ctx.constant("records", "int32_t", _fc_records(ctx, bias, span, requant),
                           f"{ctx.op.name}: {layout} bias, int16 weight pairs, addend low and "
                           "high, multiplier, shift, negative term")
    f = _define(ctx, "mcuflow_dsp_fc_small_t", "fc", _fc_fields(ctx, params, requant, records))
    call = (f"{function}(&{f}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])});")
    return _code(ctx, call, "mcuflow_conv_dsp")


def _fc_records(ctx: EmitContext, bias: np.ndarray, span: dsp.Domain,
                requant: dsp.FastRequant) -> np.ndarray:
    """int32 records of mcuflow_dsp_fc_small_t: per unit (_short) or for all units (_few)."""
    weights = ctx.input(1).data
    units, depth = weights.shape
    live = np.where(span.constant, 0, bias)
    rq = requant.words()
    tails = np.column_stack([rq[:, 2], rq[:, 3], rq[:, 0], rq[:, 1], requant.negatives])
    if depth <= FC_SHORT_DEPTH:
        records = np.column_stack([live, _int16_words(weights, 2).reshape(units, -1), tails])
    else:
        words = _int16_words(weights, depth // 4).transpose(1, 0, 2).reshape(-1)
        records = np.concatenate([live, words, tails.reshape(-1)])
    return records.astype(np.int64).astype(np.int32)


def _fc_fields(ctx: EmitContext, params: FullyConnectedParams, requant: dsp.FastRequant,
               records: str) -> dict[str, int | str]:
    """The fields of mcuflow_dsp_fc_small_t (_few's Duff's device entry and routine too)."""
    units, depth = ctx.input(1).shape
    narrow = (params.act_min, params.act_max) != (-128, 127)
    batches, ties = ctx.input(0).size // depth, int(any(requant.negatives))
    fields: dict[str, int | str] = {"records": records}
    if depth > FC_SHORT_DEPTH:
        groups = depth // 4
        one_row = batches == 1 and not narrow
        fields |= {"blocks": -(-groups // 8), "entry": -groups % 8 * _few_bytes(units) + 1,
                   "routine": units - 1 + FC_FEW_UNITS * ties if one_row else FEW_ROWS}
    return fields | {"rows": units, "depth": depth, "batches": batches, "ties": ties,
                     "narrow": int(narrow), "act_min": params.act_min,
                     "act_max": params.act_max}


def _few_bytes(units: int) -> int:
    """MCUFLOW_DSP_FEW_BYTES: code bytes of a group of `units` units in the _few kernel."""
    return 4 * (4 + 2 * units + (units == 4))


def _int16_words(weights: np.ndarray, groups: int) -> np.ndarray:
    """[units, groups, 2] int32: per group of 4 columns the int16 pairs (c0, c2), (c1, c3)."""
    padded = np.zeros((len(weights), 4 * groups), np.int64)
    padded[:, :weights.shape[1]] = weights
    lanes = (padded & 0xFFFF).reshape(len(weights), groups, 2, 2)  # [.., (c0, c1), (c2, c3)]
    return (lanes[:, :, 0] | (lanes[:, :, 1] << 16)).astype(np.uint32).view(np.int32)


def _fc_requant(params: FullyConnectedParams, span: dsp.Domain) -> dsp.FastRequant | None:
    """One D for the layer, else one per row (per-channel scales whose D ranges are disjoint)."""
    requantize = dsp.scale_function(params.scales, params.output_offset)
    natural = dsp.scale_natural(params.scales)
    act = (params.act_min, params.act_max)
    shared = dsp.fast_requant(requantize, span, natural, *act)
    return shared if shared is not None else dsp.fast_requant(requantize, span, natural, *act,
                                                              per_row=True)


def _padded_rows(weights: Tensor, rows: int) -> np.ndarray:
    padded = np.zeros((rows, weights.shape[1]), np.int64)
    padded[:weights.shape[0]] = weights.data
    return padded


def depthwise(ctx: EmitContext) -> LayerCode | None:
    """3x3 DEPTHWISE_CONV_2D channel by channel over an int16 plane (doubled weights)."""
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    plane = dsp_depthwise_plane(ctx.graph, ctx.op, ctx.inplace)
    if plane is None:
        return _decline(ctx, "the channel-by-channel DSP kernel needs a 3x3 kernel, no "
                        "dilation, depth multiplier 1 and stride 1 or 2")
    if ctx.inplace is InPlace.DEPTHWISE and x.shape[0] != 1:
        return _decline(ctx, f"in-place DEPTHWISE step of {x.shape[0]} images")
    scratch = _scratch(ctx, plane.nbytes, "mcuflow_half_t")
    if scratch is None:
        return _decline(ctx, _no_scratch(ctx))
    params = prepare_conv(x, weights, out, ctx.op.attrs)
    taps = np.moveaxis(weights.data.reshape(-1, weights.shape[3]), 1, 0)
    bias = _folded(ctx, taps, params.input_offset)
    span = dsp.domain(taps, bias)
    rq = _depthwise_words(ctx, params, span)
    if rq is None:
        return None
    words, ties, exact = rq
    kernel = weights.data.transpose(0, 2, 1, 3) if plane.transposed else weights.data
    channels = np.zeros((len(taps), DW_WORDS), np.int64)
    channels[:, :6] = dsp.dw_taps(kernel).view(np.int32)
    channels[:, 6:10] = words
    channels[:, 10] = channels[:, 11] = 2 * (bias if exact else np.where(span.constant, 0, bias))
    layout = ("multiplier, left shift, right shift, output offset" if exact
              else "multiplier, shift, addend low, addend high")
    symbol = ctx.constant("channels", "int32_t", channels.astype(np.int32),
                          f"{ctx.op.name}: per channel doubled 3x3 taps as int16 pairs, "
                          f"{layout}, doubled bias")
    fields = {"channels": symbol, **_dw_geometry(ctx, params, plane),
              "plane_rows": plane.rows, "plane_columns": plane.columns,
              "pad_value": -params.input_offset, "act_min": params.act_min,
              "act_max": params.act_max, "ties": ties, **({"exact": 1} if exact else {})}
    d = _define(ctx, "mcuflow_dsp_dw_t", "dw", fields)
    call = (f"mcuflow_dwconv_3x3_dsp_s8(&{d}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])}, {scratch});")
    return _code(ctx, call, "mcuflow_dwconv_dsp")


def _dw_geometry(ctx: EmitContext, params: ConvParams, plane: DwPlane) -> dict[str, int | str]:
    """Input and output extents, steps, pads and strides across and along the kernel's lines."""
    attrs = ctx.op.attrs
    batches, in_h, in_w, depth = ctx.input(0).shape
    _, out_h, out_w, _ = ctx.output().shape
    step = ctx.output_pixel_step()
    rows = {"in": (in_h, in_w * depth), "out": (out_h, out_w * step),
            "pad": params.pad_h, "stride": attrs.stride_h}
    columns = {"in": (in_w, depth), "out": (out_w, step), "pad": params.pad_w,
               "stride": attrs.stride_w}
    across, along = (columns, rows) if plane.transposed else (rows, columns)
    return {
        "batches": batches, "depth": depth,
        "in_across": across["in"][0], "in_along": along["in"][0],
        "in_across_step": across["in"][1], "in_along_step": along["in"][1],
        "in_batch_step": in_h * in_w * depth,
        "pad_across": across["pad"], "pad_along": along["pad"],
        "stride_across": across["stride"], "stride_along": along["stride"],
        "out_across": across["out"][0], "out_along": along["out"][0],
        "out_across_step": across["out"][1], "out_along_step": along["out"][1],
        "out_batch_step": out_h * out_w * step,
    }


def add(ctx: EmitContext, layout: str) -> LayerCode | None:
    """ADD / SUB: each input's rescaling tabulated, the sum requantised by one multiply."""
    if ctx.op.kind not in (OpKind.ADD, OpKind.SUB):
        return None
    params = prepare_add(ctx.input(0), ctx.input(1), ctx.output(), ctx.op.attrs)
    values = np.arange(-128, 128, dtype=np.int64)
    tables = [multiply_by_quantized_multiplier_array(
        (values + offset) << params.left_shift, multiplier, shift)
        for offset, multiplier, shift in (
            (params.input1_offset, params.input1_multiplier, params.input1_shift),
            (params.input2_offset, params.input2_multiplier, params.input2_shift))]
    if ctx.op.kind is OpKind.SUB:
        tables[1] = -tables[1]
    span = dsp.Domain(np.array([tables[0].min() + tables[1].min()]),
                      np.array([tables[0].max() + tables[1].max()]))
    multiplier, shift = [params.output_multiplier], [params.output_shift]
    if not _int32(span):
        return _decline(ctx, f"the sum of the rescaled inputs can leave int32 ({int(span.low[0])}"
                        f"..{int(span.high[0])})")
    requant = dsp.fast_requant(dsp.conv_function(multiplier, shift, params.output_offset), span,
                               dsp.conv_natural(multiplier, shift), params.act_min,
                               params.act_max)
    if requant is None:
        return _decline(ctx, "no one-multiply requantisation of the sum is exact (output "
                        f"multiplier {params.output_multiplier}, shift {params.output_shift})")
    symbols = [ctx.constant(f"table{i + 1}", "int32_t", table.astype(np.int32),
                            f"{ctx.op.name}: input {i + 1} rescaled, for every int8 value")
               for i, table in enumerate(tables)]
    words = ", ".join(str(int(w)) for w in requant.words()[0])
    symbol = _define(ctx, "mcuflow_dsp_add_t", "add", {
        "table1": symbols[0], "table2": symbols[1], "rq": f"{{{words}}}",
        "negative": requant.negative, "act_min": params.act_min, "act_max": params.act_max})
    call = (f"mcuflow_add_dsp_s8(&{symbol}, &{layout}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.inputs[1])}, {ctx.pointer(ctx.op.outputs[0])});")
    return _code(ctx, call, "mcuflow_elementwise_dsp")


def depthwise_pixels(ctx: EmitContext, window: str) -> LayerCode | None:
    """DEPTHWISE_CONV_2D pixel by pixel, four channels per step, no scratch (OVERLAP too)."""
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    if ctx.op.attrs.depth_multiplier != 1:
        return _decline(ctx, f"depth multiplier {ctx.op.attrs.depth_multiplier}")
    if ctx.inplace is InPlace.DEPTHWISE:
        return _decline(ctx, "in-place DEPTHWISE step, which only the channel-by-channel DSP "
                        f"kernel runs, and it does not apply: {ctx.portable_reason}")
    params = prepare_conv(x, weights, out, ctx.op.attrs)
    taps = np.moveaxis(weights.data.reshape(-1, weights.shape[3]), 1, 0)
    bias = _bias(ctx, len(taps))
    span = dsp.skipping_domain(taps, bias, params.input_offset)
    rq = _depthwise_words(ctx, params, span)
    if rq is None:
        return None
    words, ties, exact = rq
    bias2 = 2 * (bias if exact else np.where(span.constant, 0, bias))
    layout = ("multiplier, left shift, right shift, output offset" if exact
              else "multiplier, shift, addend low, addend high")
    groups = ctx.constant("groups", "int32_t", dsp.dw_pixel_records(weights.data, bias2, words),
                          f"{ctx.op.name}: per group of 4 channels the doubled bias"
                          + ("" if exact else " (0 for all-zero channels)")
                          + f", doubled taps as int16 pairs, {layout} per channel")
    pads = ctx.constant("pads", "int8_t", np.full(-(-x.shape[3] // 4) * 4, -params.input_offset,
                                                  np.int8),
                        f"{ctx.op.name}: the input zero point, read by taps in the padding")
    d = _define(ctx, "mcuflow_dsp_dw_pixels_t", "dwp", {
        "groups": groups, "pads": pads,
        "act_min": params.act_min, "act_max": params.act_max, "ties": ties,
        **({"exact": 1} if exact else {})})
    call = (f"mcuflow_dwconv_dsp_s8(&{window}, &{d}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])});")
    return _code(ctx, call, "mcuflow_dwconv_dsp")
