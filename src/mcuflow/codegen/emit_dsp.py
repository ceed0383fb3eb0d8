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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.codegen import dsp
from mcuflow.codegen.context import EmitContext, LayerCode, c_int
from mcuflow.hw.dw_s16 import (
    FORM_3X3,
    FORM_3X3_S2,
    FORM_S2,
    HEADER_WORDS,
    DwS16Plane,
    dw_s16_decline,
    dw_s16_plane,
)
from mcuflow.hw.kernels import (
    DENSE_DW_CHANNELS,
    FC_FEW_UNITS,
    FC_SHORT_DEPTH,
    depthwise_dense_applies,
    dsp_depthwise_plane,
    fc_few_passes,
    fully_connected_dsp_kernel,
)
from mcuflow.hw.layouts import (
    GATHER_VALUES,
    GATHER_WORDS,
    DwPlane,
    dsp_gather_mode,
    dsp_groups,
    dsp_padded_channels,
    dsp_row_columns,
    dw_edge_classes,
)
from mcuflow.hw.tconv_phases import TconvPhase, phase_gather, transpose_conv_phases
from mcuflow.ir.graph import Tensor
from mcuflow.ir.ops import DepthwiseConv2DAttrs, OpKind
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN
from mcuflow.ir.svdf import STATE_INPUT, svdf_bias
from mcuflow.memory.plan import InPlace
from mcuflow.memory.scratch import scratch_bytes
from mcuflow.quant.fixedpoint import QuantizedMultiplier, multiply_by_quantized_multiplier_array
from mcuflow.ref.conv2d import ConvParams, prepare_conv
from mcuflow.ref.elementwise import prepare_add
from mcuflow.ref.fully_connected import FullyConnectedParams, prepare_fully_connected
from mcuflow.ref.int16x8 import ConvS16Params, prepare_conv_s16
from mcuflow.ref.svdf import SvdfParams, prepare_svdf
from mcuflow.ref.transpose_conv import TransposeConvParams, prepare_transpose_conv

DSP_HEADER = "mcuflow_dsp.h"
DSP_SUFFIX = "_dsp"
SCRATCH_ALIGNMENT = 8  # LDRD
DOUBLED_LIMIT = 1 << 30  # |acc| below this keeps 2 * acc inside int32
DW_WORDS = 12  # MCUFLOW_DSP_DW_WORDS
RQ_FAST, RQ_EXACT, RQ_CLAMPED, RQ_SCALED = 0, 1, 2, 3  # MCUFLOW_DSP_RQ_*
DSP_KINDS = frozenset({OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED,
                       OpKind.ADD, OpKind.SUB, OpKind.TRANSPOSE_CONV, OpKind.SVDF,
                       OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM})
"""Op kinds with a DSP kernel: on a DSP core, a step of these kinds running a portable kernel
has a `portable_reason`."""


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


def _quads_and_row(ctx: EmitContext, weights: np.ndarray) -> tuple[np.ndarray, str] | str:
    """The quad-packed rows of `weights` and the step's word scratch, or why the kernel declines.

    The matrix-vector DSP kernels (FULLY_CONNECTED, SVDF's features) need both.
    """
    row = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                   "mcuflow_word_t")
    if row is None:
        return _no_scratch(ctx)
    packed = dsp.pack_quads(weights)
    return UNPACKABLE if packed is None else (packed, row)


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


def conv2d(ctx: EmitContext, window: str, dense: np.ndarray | None = None
           ) -> LayerCode | None:
    """CONV_2D as a 2 x 2 blocked matrix product over int16 im2col columns.

    `dense`: the [out_c, KH, KW, in_c] weights of a DEPTHWISE_CONV_2D run as this product
    (depthwise_dense), instead of the op's.
    """
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    data = weights.data if dense is None else dense
    columns = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                       "mcuflow_word_t")
    in_c = x.shape[3]
    gather = dsp_gather_mode(in_c, data.shape[2], ctx.op.attrs.dilation_w)
    matrix = data.reshape(data.shape[0], -1)
    padding = ((0, 0),) * 3 + ((0, dsp_padded_channels(in_c) - in_c),)
    columns_matrix = np.pad(data, padding).reshape(data.shape[0], -1)
    columns_matrix = _row_padded(columns_matrix, data.shape[1],
                                 dsp_row_columns(in_c, data.shape[2], ctx.op.attrs.dilation_w))
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
    function = "mcuflow_conv2d_dsp_s8" if dense is None else "mcuflow_dwconv_dense_dsp_s8"
    call = (f"{function}(&{window}, &{m}, &{q}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])}, {columns});")
    if dense is None:
        return _code(ctx, call, "mcuflow_conv_dsp")
    return LayerCode([call], ctx.definitions,
                     frozenset({"mcuflow_conv_dsp", "mcuflow_dwconv_dense_dsp"}))


def depthwise_dense(ctx: EmitContext, window: str) -> LayerCode | None:
    """DEPTHWISE_CONV_2D of few input channels as CONV_2D's matrix product (any multiplier).

    Output channel o reads input channel o // multiplier: its weights are the depthwise taps
    in that channel's columns and zero in every other (kernels.depthwise_dense_applies).
    """
    if not depthwise_dense_applies(ctx.graph, ctx.op):
        return _decline(ctx, f"{ctx.portable_reason}, and more than {DENSE_DW_CHANNELS} "
                        "input channels for the depthwise layer as a dense matrix product")
    return conv2d(ctx, window, dsp.dense_depthwise(ctx.input(1).data,
                                                   ctx.op.attrs.depth_multiplier))


def _row_padded(matrix: np.ndarray, k_h: int, row_columns: int) -> np.ndarray:
    """[rows, k_h * row_columns]: each window row's columns followed by zero weights."""
    rows = matrix.reshape(len(matrix), k_h, -1)
    extra = row_columns - rows.shape[2]
    return np.pad(rows, ((0, 0), (0, 0), (0, extra))).reshape(len(matrix), -1)


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
    prepared = _quads_and_row(ctx, weights.data)
    if isinstance(prepared, str):
        return _decline(ctx, prepared)
    packed, row = prepared
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
    if fc_few_passes(ctx.graph, ctx.op) > 1:
        return _fc_few_split(ctx, params, bias, span, requant)
    short = function == "mcuflow_fully_connected_short_dsp_s8"
    layout = "per unit" if short else "for all units"
    records = ctx.constant("records", "int32_t", _fc_records(ctx, bias, span, requant),
                           f"{ctx.op.name}: {layout} bias, int16 weight pairs, addend low and "
                           "high, multiplier, shift, negative term")
    f = _define(ctx, "mcuflow_dsp_fc_small_t", "fc", _fc_fields(ctx, params, requant, records))
    call = (f"{function}(&{f}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])});")
    return _code(ctx, call, "mcuflow_conv_dsp")


def _fc_few_split(ctx: EmitContext, params: FullyConnectedParams, bias: np.ndarray,
                  span: dsp.Domain, requant: dsp.FastRequant) -> LayerCode:
    """One input row of more than FC_FEW_UNITS units: one _few call per FC_FEW_UNITS units.

    Each call has its own records and fields, as a layer of its units alone, and writes its
    outputs after the previous call's.
    """
    calls = []
    units = ctx.input(1).shape[0]
    for first in range(0, units, FC_FEW_UNITS):
        part = slice(first, min(first + FC_FEW_UNITS, units))
        rq = _fc_part_requant(requant, part)
        records = ctx.constant(f"records{first}", "int32_t",
                               _fc_records(ctx, bias[part], _span_part(span, part), rq, part),
                               f"{ctx.op.name}: units {part.start}..{part.stop - 1}: bias, "
                               "int16 weight pairs, addend low and high, multiplier, shift, "
                               "negative term")
        f = _define(ctx, "mcuflow_dsp_fc_small_t", f"fc{first}",
                    _fc_fields(ctx, params, rq, records, part.stop - part.start))
        calls.append(f"mcuflow_fully_connected_few_dsp_s8(&{f}, "
                     f"{ctx.pointer(ctx.op.inputs[0])}, {ctx.pointer(ctx.op.outputs[0])} + "
                     f"{first});")
    return LayerCode(calls, ctx.definitions, frozenset({"mcuflow_conv_dsp"}))


def _fc_part_requant(requant: dsp.FastRequant, part: slice) -> dsp.FastRequant:
    """The constants of units `part` alone."""
    return dsp.FastRequant(requant.multipliers[part], requant.exponents[part],
                           requant.addends[part], requant.negatives[part])


def _span_part(span: dsp.Domain, part: slice) -> dsp.Domain:
    return dsp.Domain(span.low[part], span.high[part])


def _fc_records(ctx: EmitContext, bias: np.ndarray, span: dsp.Domain,
                requant: dsp.FastRequant, part: slice = slice(None)) -> np.ndarray:
    """int32 records of mcuflow_dsp_fc_small_t: per unit (_short) or for all units (_few).

    `part`: the units of one _few call (the bias, span and constants are theirs already).
    """
    weights = ctx.input(1).data[part]
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
               records: str, part_units: int | None = None) -> dict[str, int | str]:
    """The fields of mcuflow_dsp_fc_small_t (_few's Duff's device entry and routine too).

    `part_units`: the units of one of several _few calls (kernels.fc_few_passes).
    """
    units, depth = ctx.input(1).shape
    units = part_units or units
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
    edges = None if exact else _dw_edge_classes(ctx, bias2, words)
    d = _define(ctx, "mcuflow_dsp_dw_pixels_t", "dwp", {
        "groups": groups, "pads": pads,
        "act_min": params.act_min, "act_max": params.act_max, "ties": ties,
        **({"exact": 1} if exact else {}), **(edges or {})})
    call = (f"mcuflow_dwconv_dsp_s8(&{window}, &{d}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])});")
    return _code(ctx, call, "mcuflow_dwconv_dsp")


INT16_REACH = 1 << 15  # |int16 value| <= 2^15
INT64_LIMIT = 1 << 63


def depthwise_s16(ctx: EmitContext, window: Callable[[], str]) -> LayerCode | None:
    """int16x8 DEPTHWISE_CONV_2D channel by channel over a zero-padded int16 plane.

    `window` defines the step's mcuflow_window_t (only once the kernel applies).
    """
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    plane = dw_s16_plane(ctx.graph, ctx.op)
    if plane is None:
        return _decline(ctx, f"{dw_s16_decline(ctx.op)} (the int16 DSP depthwise kernel takes "
                        "depth multiplier 1, no dilation, stride 1 or 2 along the width)")
    if ctx.inplace is not InPlace.NONE:
        return _decline(ctx, f"a step planned in place ({ctx.inplace.value})")
    scratch = _scratch(ctx, plane.nbytes, "mcuflow_half_t")
    if scratch is None:
        return _decline(ctx, _no_scratch(ctx))
    params = prepare_conv_s16(x, weights, out, ctx.op.attrs)
    taps = np.moveaxis(weights.data[0].astype(np.int64), 2, 0)  # [channels, k_h, k_w]
    bias = (ctx.input(2).data.astype(np.int64).reshape(-1) if len(ctx.op.inputs) > 2
            else np.zeros(len(taps), np.int64))
    header = _s16_requant(ctx, params, taps, bias)
    if header is None:
        return None
    words = np.concatenate([header, _s16_taps(taps, plane)], axis=1)
    record = words.shape[1] + words.shape[1] % 2
    records = np.zeros((len(taps), record), np.int64)
    records[:, :words.shape[1]] = words
    symbol = ctx.constant("channels", "int32_t", records.astype(np.uint32).view(np.int32),
                          f"{ctx.op.name}: per channel addend low and high (bias folded in), "
                          "multiplier, shift, act_min, act_max, weights as int16 pairs per "
                          "kernel row")
    d = _define(ctx, "mcuflow_dsp_dw_s16_t", "dws16", {
        "channels": symbol, "record_words": record, "form": plane.form,
        "row_words": plane.row_words, "plane_rows": plane.rows,
        "plane_columns": plane.columns, "copy_rows": plane.copy_rows,
        "copy_columns": plane.copy_columns, "act_min": params.act_min,
        "act_max": params.act_max})
    call = (f"mcuflow_dwconv_s16_dsp(&{window()}, &{d}, {ctx.pointer(ctx.op.inputs[0], 'S16')}, "
            f"{ctx.pointer(ctx.op.outputs[0], 'S16')}, {scratch});")
    return _code(ctx, call, "mcuflow_dwconv_s16_dsp")


def _s16_requant(ctx: EmitContext, params: ConvS16Params, taps: np.ndarray, bias: np.ndarray
                 ) -> np.ndarray | None:
    """The channels' requantisation words (s16_requant_words), None (declined) when none."""
    reach = INT16_REACH * np.abs(taps).reshape(len(taps), -1).sum(axis=1)
    words = s16_requant_words(params.multipliers, params.shifts, bias, reach)
    if isinstance(words, str):
        return _decline(ctx, words)
    act = np.array([[params.act_min, params.act_max]] * len(taps), np.int64).reshape(-1, 2)
    return np.concatenate([words, act], axis=1)


def s16_requant_words(multipliers: tuple[int, ...], shifts: tuple[int, ...], bias: np.ndarray,
                      reach: np.ndarray) -> np.ndarray | str:
    """Per channel [addend low, addend high, multiplier, shift] (int64), or why there are none.

    LiteRT computes ((acc + bias) * R + 2^(t-1)) >> t in int64 (R the Q15 multiplier, t = 15 -
    shift), then keeps 32 bits. With t >= 16, R' = R << max(0, 32 - t) stays below 2^31 and the
    kernel takes the high word of C + acc * R' (C = bias * R' + 2^(T-1), T = max(t, 32)),
    shifted right by T - 32: the same integer, exactly, when every partial sum of acc stays
    inside int32 (|acc| <= `reach`, below 2^31) and C + acc * R' inside int64; the result then
    fits int32 as LiteRT's does.
    """
    if int(reach.max(initial=0)) >= 1 << 31:
        return f"a channel's sum can reach {int(reach.max())}, outside int32"
    rows = []
    for multiplier, shift, b, r in zip(multipliers, shifts, bias, reach, strict=True):
        reduced = (multiplier + (1 << 15)) >> 16 if multiplier < 0x7FFF0000 else 0x7FFF
        total = 15 - shift
        if not 16 <= total <= 62:
            return (f"a requantisation shift of {shift} (the int16 DSP depthwise kernel takes "
                    "-47..-1)")
        scaled = reduced << max(0, 32 - total)
        top = max(total, 32)
        addend = int(b) * scaled + (1 << (top - 1))
        if (abs(int(b)) + int(r)) * scaled + (1 << (top - 1)) >= INT64_LIMIT:
            return f"bias {int(b)} takes the requantisation outside int64"
        rows.append([addend & 0xFFFFFFFF, (addend >> 32) & 0xFFFFFFFF, scaled, top - 32])
    return np.array(rows, np.int64).reshape(-1, HEADER_WORDS - 2)


def _s16_taps(taps: np.ndarray, plane: DwS16Plane) -> np.ndarray:
    """[channels, k_h * row_words] int16 pairs (low | high << 16) in the kernel's read order.

    3x3 stride 1: (w0, w1), (w1, w2); other widths at stride 1: per plane word i the pair
    (U_i, V_i), U_i = (w[2i], w[2i+1]), V_i = (w[2i-1], w[2i]); stride 2: U_i.
    """
    channels, k_h, k_w = taps.shape
    padded = np.zeros((channels, k_h, k_w + 3), np.int64)  # w[-1] .. w[k_w + 1]
    padded[:, :, 1:k_w + 1] = taps

    def w(index: int) -> np.ndarray:
        return padded[:, :, index + 1]

    def pair(low: int, high: int) -> np.ndarray:
        return (w(low) & 0xFFFF) | ((w(high) & 0xFFFF) << 16)

    if plane.form == FORM_3X3:
        words = [pair(0, 1), pair(1, 2)]
    elif plane.form in (FORM_S2, FORM_3X3_S2):
        words = [pair(2 * i, 2 * i + 1) for i in range(plane.row_words)]
    else:
        words = [p for i in range(plane.row_words // 2)
                 for p in (pair(2 * i, 2 * i + 1), pair(2 * i - 1, 2 * i))]
    return np.stack(words, axis=2).reshape(channels, -1)

@dataclass(frozen=True)
class _PhaseCode:
    """The constants of one TRANSPOSE_CONV output phase before they are defined."""

    fields: dict[str, int | str]
    """its window's fields (hw.tconv_phases geometry, the output steps strided)"""
    packed: np.ndarray
    gather: int
    depth: int
    chunk: int
    bias: np.ndarray
    words: np.ndarray
    mode: int
    negative: int
    offset: int


def transpose_conv(ctx: EmitContext) -> LayerCode | None:
    """TRANSPOSE_CONV as one mcuflow_conv2d_dsp_s8 per output phase (hw.tconv_phases)."""
    phases = transpose_conv_phases(ctx.graph, ctx.op)
    if phases is None and ctx.op.attrs.crop is not None:
        return _decline(ctx, "a patch window of the layer (its phases are the whole layer's)")
    if phases is None:
        return _decline(ctx, "an output phase no filter tap reaches (a kernel shorter than the "
                        "stride) or whose first output reads past the input's first pixel")
    columns = _scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace, dsp=True),
                       "mcuflow_word_t")
    if columns is None:
        return _decline(ctx, _no_scratch(ctx))
    params = prepare_transpose_conv(ctx.input(0), ctx.input(1), ctx.output(), ctx.op.attrs)
    codes = []
    for phase in phases:
        code = _tconv_phase(ctx, params, phase)
        if code is None:
            return None
        codes.append(code)
    first = _tconv_chain(ctx, params, codes)
    call = (f"mcuflow_transpose_conv_phases_dsp_s8({first}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.pointer(ctx.op.outputs[0])}, {columns});")
    return LayerCode([call], ctx.definitions, frozenset({"mcuflow_tconv_phases_dsp",
                                                         "mcuflow_conv_dsp"}))


def _tconv_phase(ctx: EmitContext, params: TransposeConvParams, phase: TconvPhase
                 ) -> _PhaseCode | None:
    """One phase's weights, folded bias and requantisation, or None (declined)."""
    n, in_h, in_w, in_c = ctx.input(0).shape
    _, out_h, out_w, out_c = ctx.output().shape
    taps = ctx.input(1).data[:, list(phase.rows.taps)][:, :, list(phase.columns.taps)]
    gather = phase_gather(in_c, phase)
    padding = ((0, 0),) * 3 + ((0, dsp_padded_channels(in_c) - in_c),)
    columns_matrix = np.pad(taps, padding).reshape(out_c, -1)
    lanes = dsp.NATURAL_LANES if gather == GATHER_VALUES else dsp.GATHER_WORDS_LANES
    packed = dsp.pack_pairs(columns_matrix, lanes)
    if packed is None:
        return _decline(ctx, UNPACKABLE)
    matrix = taps.reshape(out_c, -1)
    bias = _folded(ctx, matrix, params.input_offset)
    span = dsp.domain(matrix, bias)
    if not _int32(span, live_only=False):
        return _decline(ctx, _accumulators(span))
    requant = _requant_of(params.multipliers, params.shifts, params.output_offset,
                          params.act_min, params.act_max, None, span.low.dtype.str,
                          span.low.tobytes(), span.high.tobytes())
    if requant is not None:
        words, mode, negative = requant.words(), RQ_FAST, requant.negative
        bias = np.where(span.constant, 0, bias)
    else:
        exact = dsp.exact_words(params.multipliers, params.shifts, params.output_offset)
        if exact is None:
            return _decline(ctx, WIDE_SHIFT)
        words, mode, negative = exact, RQ_EXACT, 0
    step = ctx.output_pixel_step()
    s_h, s_w = params.stride_h, params.stride_w
    fields = {
        "batches": n, "in_h": in_h, "in_w": in_w, "in_c": in_c,
        "out_h": phase.rows.count, "out_w": phase.columns.count, "out_c": out_c,
        "k_h": len(phase.rows.taps), "k_w": len(phase.columns.taps), "stride_h": 1,
        "stride_w": 1, "dilation_h": 1, "dilation_w": 1, "pad_top": phase.rows.pad,
        "pad_left": phase.columns.pad, "input_offset": params.input_offset,
        "out_pixel_step": s_w * step, "out_row_step": s_h * out_w * step,
        "out_batch_step": out_h * out_w * step}
    offset = (phase.rows.first * out_w + phase.columns.first) * step
    return _PhaseCode(fields, packed.reshape(-1), gather, columns_matrix.shape[1],
                      dsp.chunk_groups(columns_matrix), _padded(bias, out_c + out_c % 2),
                      np.asarray(words).reshape(-1), mode, negative, offset)


def _tconv_chain(ctx: EmitContext, params: TransposeConvParams, codes: list[_PhaseCode]
                 ) -> str:
    """Define the layer's chain of mcuflow_dsp_tconv_phase_t; returns a pointer to its first."""
    name, rows = ctx.op.name, ctx.output().shape[3]
    weights = ctx.constant("weights", "int32_t",
                           np.concatenate([c.packed for c in codes]).view(np.int32),
                           f"{name}: int8 weights of each output phase, its taps flipped, "
                           "packed in channel pairs")
    bias = ctx.constant("bias", "int32_t", np.concatenate([c.bias for c in codes]).astype(
        np.int32), f"{name}: per phase bias + input offset * its weight sums")
    rq = ctx.constant("rq", "int32_t", np.concatenate([c.words for c in codes]).astype(np.int32),
                      f"{name}: per phase and channel multiplier, shift, addend low and high "
                      "(or multiplier, left shift, right shift, output offset)")
    starts = np.cumsum([0] + [len(c.packed) for c in codes])
    following = "NULL"
    for k in reversed(range(len(codes))):
        c = codes[k]
        matrix = {"weights": f"(const uint32_t *){weights} + {int(starts[k])}", "rows": rows,
                  "depth": c.depth, "groups": dsp_groups(c.depth), "chunk_groups": c.chunk,
                  "gather": c.gather}
        requant = {"bias": f"{bias} + {k * len(c.bias)}", "rq": f"{rq} + {k * len(c.words)}",
                   "negative": c.negative, "act_min": params.act_min,
                   "act_max": params.act_max, "mode": c.mode}
        following = "&" + _define(ctx, "mcuflow_dsp_tconv_phase_t", f"phase{k}", {
            "g": _initialiser(c.fields), "m": _initialiser(matrix), "q": _initialiser(requant),
            "out_offset": c.offset, "next": following})
    return following


def _initialiser(fields: dict[str, int | str]) -> str:
    """A nested struct's designated initialiser."""
    items = ", ".join(f".{key} = {value if isinstance(value, str) else c_int(value)}"
                      for key, value in fields.items())
    return f"{{{items}}}"
def _wrapped(values: np.ndarray) -> np.ndarray:
    """int64 values wrapped to int32 as the kernels' int32 arithmetic wraps them."""
    return ((values + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def svdf(ctx: EmitContext) -> LayerCode | None:
    """SVDF: FULLY_CONNECTED's matrix-vector product, the state shifted by the time products.

    Exact on every input: the feature sums wrap as LiteRT's int32 sums do (the input offset
    folded into a bias wraps the same way), and each requantisation is the one-multiply formula
    proven on every reachable sum (_svdf_requant) or TFLite's own.
    """
    feature = ctx.input(1)
    filters, depth = feature.shape
    prepared = _quads_and_row(ctx, feature.data)
    if isinstance(prepared, str):
        return _decline(ctx, prepared)
    packed, scratch = prepared
    params = prepare_svdf(ctx.graph, ctx.op)
    quads = -(-filters // 4) * 4
    folded = -params.input_offset * feature.data.astype(np.int64).sum(axis=1)
    feature_bias = ctx.constant("feature_bias", "int32_t", _padded(_wrapped(folded), quads),
                                f"{ctx.op.name}: minus the input zero point times each filter's "
                                "weight sum (int32, wrapped)")
    m = _matrix(ctx, packed, filters, depth, dsp.chunk_groups(_padded_rows(feature, quads)),
                GATHER_WORDS, "in groups of two filter pairs")
    span = dsp.domain(feature.data, folded)
    bias = svdf_bias(ctx.op)
    s = _define(ctx, "mcuflow_dsp_svdf_t", "svdf", {
        "matrix": f"&{m}", "feature_bias": feature_bias,
        "weights_time": ctx.pool.tensor(ctx.graph, ctx.op.inputs[2]),
        "bias": ctx.pool.tensor(ctx.graph, bias) if bias is not None else ctx.constant(
            "bias", "int32_t", np.zeros(params.units, np.int32), f"{ctx.op.name}: no bias"),
        "batches": params.batch, "memory": params.memory, "rank": params.rank,
        "output_offset": params.output_offset,
        "feature": _svdf_requant(params.feature, 0, _union(span), (INT16_MIN, INT16_MAX)),
        "time": _svdf_requant(params.time, params.output_offset, _time_span(ctx, params),
                              (-128, 127))})
    call = (f"mcuflow_svdf_dsp_s8(&{s}, {ctx.pointer(ctx.op.inputs[0])}, "
            f"{ctx.state(ctx.op.inputs[STATE_INPUT])}, {ctx.pointer(ctx.op.outputs[0])}, "
            f"{scratch});")
    return _code(ctx, call, "mcuflow_conv_dsp")


def _union(span: dsp.Domain) -> tuple[int, int]:
    """[low, high] of every channel's sums, all of int32 when some sum can leave it (it wraps)."""
    low, high = int(span.low.min()), int(span.high.max())
    return (low, high) if low >= INT32_MIN and high <= INT32_MAX else (INT32_MIN, INT32_MAX)


def _time_span(ctx: EmitContext, params: SvdfParams) -> tuple[int, int]:
    """The reachable unit sums: bias + the rank filters' dot products over int16 states."""
    time = ctx.input(2).data.astype(np.int64).reshape(params.units, -1)
    bias_name = svdf_bias(ctx.op)
    bias = (np.zeros(params.units, np.int64) if bias_name is None
            else ctx.tensor(bias_name).data.astype(np.int64))
    low = bias + np.minimum(INT16_MIN * time, INT16_MAX * time).sum(axis=1)
    high = bias + np.maximum(INT16_MIN * time, INT16_MAX * time).sum(axis=1)
    return _union(dsp.Domain(low, high))


def _svdf_requant(multiplier: QuantizedMultiplier, offset: int, span: tuple[int, int],
                  act: tuple[int, int]) -> str:
    """An mcuflow_dsp_svdf_rq_t: one-multiply words exact on `span`, else TFLite's arithmetic.

    One multiplier and shift serve every filter (unit), so constants proven on the union of
    their sums serve each.
    """
    m, s = [multiplier.multiplier], [multiplier.shift]
    domain = dsp.Domain(np.array([span[0]], np.int64), np.array([span[1]], np.int64))
    fast = dsp.fast_requant(dsp.conv_function(m, s, offset), domain, dsp.conv_natural(m, s),
                            *act)
    words = [0] * 4 if fast is None else fast.words()[0].tolist()
    negative = 0 if fast is None else fast.negative
    rq = ", ".join(c_int(w) for w in words)
    return (f"{{.fast = {int(fast is not None)}, .rq = {{{rq}}}, .negative = {c_int(negative)}, "
            f".multiplier = {c_int(m[0])}, .shift = {s[0]}}}")

def _dw_edge_classes(ctx: EmitContext, bias2: np.ndarray, words: np.ndarray
                     ) -> dict[str, int | str] | None:
    """The edge-class fields of mcuflow_dsp_dw_pixels_t (see mcuflow_dsp.h), or None.

    Where layouts.dw_edge_classes gives classes: per class the records with zero weights at
    the taps outside the input, and its taps.
    """
    classes = dw_edge_classes(ctx.graph, ctx.op)
    if classes is None:
        return None
    weights = ctx.input(1)
    _, kh, kw, _ = weights.shape
    _, _, in_w, in_c = ctx.input(0).shape
    records, taps = [], []
    for ky, ky_end in classes.row_ranges:
        for kx, kx_end in classes.column_ranges:
            inside = np.zeros((1, kh, kw, 1), np.int64)
            inside[:, ky:ky_end, kx:kx_end] = 1
            records.append(dsp.dw_pixel_records(weights.data * inside, bias2, words))
            taps.append([ky, kx, *_class_taps(ctx.op.attrs, in_w, in_c, (kh, kw),
                                              (ky, ky_end), (kx, kx_end))])
    name = ctx.op.name
    return {
        "edges": ctx.constant("edges", "int32_t", np.concatenate(records),
                              f"{name}: the group records again per edge class, zero weights "
                              "at the taps outside the input"),
        "edge_taps": ctx.constant("edge_taps", "int32_t", np.array(taps, np.int32),
                                  f"{name}: per edge class its first tap inside, the taps' "
                                  "offsets from it"),
        "row_classes": ctx.constant("row_classes", "int8_t", np.array(classes.rows, np.int8),
                                    f"{name}: the edge class of each output row"),
        "column_classes": ctx.constant("column_classes", "int8_t",
                                       np.array(classes.columns, np.int8),
                                       f"{name}: the edge class of each output column"),
        "column_count": len(classes.column_ranges)}


def _class_taps(attrs: DepthwiseConv2DAttrs, in_w: int, in_c: int, kernel: tuple[int, int],
                rows: tuple[int, int], columns: tuple[int, int]) -> list[int]:
    """mcuflow_dwp_run_t's tap offsets from the class's first tap inside (outside: itself)."""
    first = (rows[0] * attrs.dilation_h * in_w + columns[0] * attrs.dilation_w) * in_c
    offsets = []
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            inside = rows[0] <= ky < rows[1] and columns[0] <= kx < columns[1]
            at = (ky * attrs.dilation_h * in_w + kx * attrs.dilation_w) * in_c - first
            offsets.append(at - 4 if inside else -4)
    offsets[0] = 0
    return offsets
