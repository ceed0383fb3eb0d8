"""C emitters: one per OpKind, turning a planned step into a kernel call with frozen constants."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from mcuflow.codegen import emit_dsp, emit_s16_dsp, lstm_dsp
from mcuflow.codegen.codebook import emit_with_codebooks
from mcuflow.codegen.context import (
    CodegenError,
    EmitContext,
    LayerCode,
    c_double,
    c_float,
    c_int,
)
from mcuflow.codegen.tables import lookup_table_f32, lookup_table_s8, softmax_exp_table
from mcuflow.hw.batch_space import batch_space_layout
from mcuflow.hw.kernels import (
    KERNELS,
    arg_layout,
    gather_layout,
    int16_step,
    piece_copies,
    slice_kernel,
    slice_layout,
    strided_layout,
    tile_of,
    transpose_conv_kernel,
)
from mcuflow.hw.layouts import broadcast_layout, merge_dims
from mcuflow.hw.storage_io import TAG_BYTES
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    LSTM_CELL_STATE,
    LSTM_OUTPUT_STATE,
    MAX_RANK,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    MeanAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    SliceAttrs,
    SoftmaxAttrs,
    box_of,
    depth_to_space_phases,
)
from mcuflow.ir.registry import OpTable
from mcuflow.ir.svdf import STATE_INPUT, svdf_bias
from mcuflow.memory.inplace import alias_offset, concat_slots, piece_views
from mcuflow.memory.plan import INPLACE_OF, RUNS_NO_CODE, InPlace
from mcuflow.memory.scratch import scratch_bytes
from mcuflow.ref.conv2d import ConvParams, prepare_conv
from mcuflow.ref.elementwise import prepare_add, prepare_add_s16, prepare_mul, prepare_mul_s16
from mcuflow.ref.fully_connected import FullyConnectedParams, prepare_fully_connected
from mcuflow.ref.int16x8 import (
    SIGMOID_TABLE_S16,
    ConvS16Params,
    prepare_conv_s16,
    prepare_fully_connected_s16,
    prepare_sigmoid_s16,
    prepare_softmax_s16,
)
from mcuflow.ref.log_softmax import prepare_log_softmax
from mcuflow.ref.lstm import prepare_lstm
from mcuflow.ref.mean import MeanParams, prepare_mean
from mcuflow.ref.pooling import prepare_pool
from mcuflow.ref.prelu import prepare_prelu
from mcuflow.ref.quantize import prepare_requantize
from mcuflow.ref.resize_bilinear import prepare_bilinear
from mcuflow.ref.resize_nearest_neighbor import prepare_resize
from mcuflow.ref.softmax import prepare_softmax
from mcuflow.ref.squared_difference import (
    SQUARED_DIFFERENCE_LEFT_SHIFT,
    prepare_squared_difference,
)
from mcuflow.ref.sum import prepare_sum
from mcuflow.ref.svdf import prepare_svdf
from mcuflow.ref.transpose_conv import prepare_transpose_conv

EmitFn = Callable[[EmitContext], LayerCode]


EMITTERS: OpTable[EmitFn] = OpTable("C emitter")
emitter = EMITTERS.register


def emit_step(ctx: EmitContext) -> LayerCode:
    """The C of one planned step, refusing an in-place way its kernels cannot honour."""
    if ctx.inplace not in INPLACE_OF[ctx.op.kind]:
        raise CodegenError(
            f"{ctx.op.kind.value} '{ctx.op.name}' cannot run in place as {ctx.inplace.value}"
        )
    code = emit_with_codebooks(ctx, EMITTERS[ctx.op.kind])
    code.statements += _spill_writes(ctx)
    if ctx.dsp and code.statements and not emit_dsp.uses_dsp(code.kernels):
        code.portable_reason = code.portable_reason or emit_dsp.portable_reason(ctx)
    if ctx.inplace in RUNS_NO_CODE and code.statements:
        raise CodegenError(f"{ctx.inplace.value} step {ctx.layer} must not run code")
    unknown = [name for name in code.functions if name not in KERNELS]
    if unknown:
        raise CodegenError(f"step {ctx.layer} calls {unknown[0]}, which has no record in "
                           "mcuflow.hw.kernels")
    refused = [name for name in code.functions if not KERNELS[name].runs_as(ctx.inplace)]
    if refused:
        raise CodegenError(f"step {ctx.layer} runs {ctx.inplace.value} but calls {refused[0]}, "
                           "whose catalogue record does not honour that contract")
    return code


# --- shared pieces ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DerivedArray:
    """A constant array a layer's emitter computes from its tensors (not a tensor of the graph)."""

    stem: str
    ctype: str
    values: np.ndarray
    what: str
    """What the array holds, for its comment in the generated C."""


def _bias_array(graph: Graph, op: Operator, weights: np.ndarray, input_offset: int,
               fold: bool) -> DerivedArray:
    """The int32 bias array of a conv / FC layer whose filter rows are `weights`.

    With `fold`, input_offset * sum(weights[o]) is folded in (the kernel then multiplies raw
    int8 inputs).
    """
    units = weights.shape[0]
    bias = np.zeros(units, np.int64)
    if len(op.inputs) > 2:
        bias += graph.tensors[op.inputs[2]].data.astype(np.int64).reshape(-1)
    if fold:
        bias += input_offset * weights.reshape(units, -1).astype(np.int64).sum(axis=1)
    if np.abs(bias).max(initial=0) >= 1 << 31:  # the int32_accumulator constraint bounds it
        raise CodegenError(f"{op.kind.value} '{op.name}': bias plus input offset times "
                           "weight sum exceeds int32, which int32_accumulator should refuse")
    what = "bias + input offset * weight sums" if fold else "bias"
    return DerivedArray("bias", "int32_t", bias.astype(np.int32), what)


def _requant_arrays(params: ConvParams) -> tuple[DerivedArray, DerivedArray]:
    """The per-channel Q31 multipliers and shifts of a conv layer."""
    return (DerivedArray("multiplier", "int32_t", np.array(params.multipliers, np.int32),
                         "Q31 multipliers"),
            DerivedArray("shift", "int32_t", np.array(params.shifts, np.int32), "shifts"))


def portable_arrays(graph: Graph, op: Operator,
                    params: ConvParams | FullyConnectedParams | None = None
                    ) -> tuple[DerivedArray, ...]:
    """The arrays a portable int8 conv or FC emitter defines beside its filter, in its order.

    The emitters of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED pool the filter as it is.
    `params` are the step's prepared parameters when the caller has them.
    """
    x, weights, out = (graph.tensors[name] for name in (*op.inputs[:2], op.outputs[0]))
    if op.kind is OpKind.FULLY_CONNECTED:
        fc = params or prepare_fully_connected(x, weights, out, op.attrs)
        return (_bias_array(graph, op, weights.data, fc.input_offset, fold=True),
                _scale_array(fc))
    params = params or prepare_conv(x, weights, out, op.attrs)
    if op.kind is OpKind.DEPTHWISE_CONV_2D:
        return (_bias_array(graph, op, _depthwise_rows(weights), params.input_offset, False),
                *_requant_arrays(params))
    return _bias_array(graph, op, weights.data, params.input_offset, True), *_requant_arrays(params)


def _depthwise_rows(weights: Tensor) -> np.ndarray:
    """A depthwise filter (1, kh, kw, C) as one row per channel."""
    return np.moveaxis(weights.data.reshape(-1, weights.shape[3]), 1, 0)


def _scale_array(params: FullyConnectedParams) -> DerivedArray:
    return DerivedArray("scale", "double", np.array(params.scales, np.float64),
                        "double-precision output scales")


def _define_array(ctx: EmitContext, array: DerivedArray) -> str:
    """Pool `array` for the step's layer; returns its symbol."""
    return ctx.constant(array.stem, array.ctype, array.values, f"{ctx.op.name}: {array.what}")


def _requant_fields(bias: str, multiplier: str, shift: str, scale: str, output_offset: int,
                    act_min: int, act_max: int) -> dict[str, int | str]:
    return {"bias": bias, "multiplier": multiplier, "shift": shift, "scale": scale,
            "output_offset": output_offset, "act_min": act_min, "act_max": act_max}


def _requant(ctx: EmitContext, params: ConvParams, arrays: tuple[DerivedArray, ...]) -> str:
    """Pool a conv layer's bias, multipliers and shifts and define its mcuflow_requant_t."""
    bias, multiplier, shift = (_define_array(ctx, array) for array in arrays)
    fields = _requant_fields(bias, multiplier, shift, "NULL", params.output_offset,
                             params.act_min, params.act_max)
    return _define(ctx, "mcuflow_requant_t", "requant", fields)


def _define(ctx: EmitContext, ctype: str, stem: str, fields: dict[str, int | str]) -> str:
    return ctx.struct(ctype, stem, fields)


def _window(ctx: EmitContext, kernel: tuple[int, int], strides: tuple[int, int],
            dilations: tuple[int, int], pads: tuple[int, int], input_offset: int) -> str:
    """Define the mcuflow_window_t of a window op; returns its symbol.

    The output is strided when it is a channel slice of a concatenation planned in place.
    """
    n, in_h, in_w, in_c = ctx.input(0).shape
    _, out_h, out_w, out_c = ctx.output().shape
    step = ctx.output_pixel_step()
    fields = {
        "batches": n, "in_h": in_h, "in_w": in_w, "in_c": in_c,
        "out_h": out_h, "out_w": out_w, "out_c": out_c, "k_h": kernel[0], "k_w": kernel[1],
        "stride_h": strides[0], "stride_w": strides[1],
        "dilation_h": dilations[0], "dilation_w": dilations[1],
        "pad_top": pads[0], "pad_left": pads[1], "input_offset": input_offset,
        "out_pixel_step": step, "out_row_step": out_w * step,
        "out_batch_step": out_h * out_w * step,
    }
    return _define(ctx, "mcuflow_window_t", "window", fields)


def _code(ctx: EmitContext, call: str, kernels: tuple[str, ...]) -> LayerCode:
    return LayerCode([call], ctx.definitions, frozenset(kernels))


def _call(function: str, *args: str) -> str:
    return f"{function}({', '.join(args)});"


def _input_pointer(ctx: EmitContext, index: int) -> str:
    """An int8_t pointer to input `index`; a constant int16 table (GATHER's) cast to it."""
    name = ctx.op.inputs[index]
    tensor = ctx.graph.tensors[name]
    wide = tensor.is_constant and tensor.dtype is DType.INT16
    return f"(const int8_t *){ctx.pointer(name)}" if wide else ctx.pointer(name)


def _output_pointer(ctx: EmitContext) -> str:
    return ctx.pointer(ctx.op.outputs[0])


# --- convolutions and fully connected ----------------------------------------------------------


@emitter(OpKind.CONV_2D)
def _conv2d(ctx: EmitContext) -> LayerCode:
    if int16_step(ctx.graph, ctx.op):
        return _window_s16(ctx)
    attrs: Conv2DAttrs = ctx.op.attrs
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    params = prepare_conv(x, weights, out, attrs)
    kernel = weights.shape[1:3]
    window = _window(ctx, kernel, (attrs.stride_h, attrs.stride_w),
                     (attrs.dilation_h, attrs.dilation_w), (params.pad_h, params.pad_w),
                     params.input_offset)
    if ctx.dsp and (code := emit_dsp.conv2d(ctx, window)) is not None:
        return code
    requant = _requant(ctx, params, portable_arrays(ctx.graph, ctx.op, params))
    filter_symbol = ctx.pool.tensor(ctx.graph, ctx.op.inputs[1])
    needed = scratch_bytes(ctx.graph, ctx.op, ctx.inplace)
    if needed == 0:
        if kernel != (1, 1):
            raise CodegenError(f"CONV_2D '{ctx.op.name}' has no scratch for its im2col")
        call = _call("mcuflow_conv2d_1x1_s8", f"&{window}", f"&{requant}",
                     _input_pointer(ctx, 0), filter_symbol, _output_pointer(ctx))
    else:
        _require_scratch(ctx, needed)
        call = _call("mcuflow_conv2d_s8", f"&{window}", f"&{requant}", _input_pointer(ctx, 0),
                     filter_symbol, _output_pointer(ctx), ctx.scratch())
    return _code(ctx, call, ("mcuflow_conv",))


def _require_scratch(ctx: EmitContext, needed: int) -> None:
    if ctx.step.scratch is None or ctx.plan.buffers[ctx.step.scratch].size < needed:
        raise CodegenError(f"'{ctx.op.name}' needs {needed} bytes of planned scratch")


@emitter(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(ctx: EmitContext) -> LayerCode:
    if ctx.dsp and int16_step(ctx.graph, ctx.op) and (
            code := emit_dsp.depthwise_s16(ctx, lambda: _window_of_s16(ctx))) is not None:
        return code
    if int16_step(ctx.graph, ctx.op):
        return _window_s16(ctx)
    if ctx.dsp and (code := emit_dsp.depthwise(ctx)) is not None:
        return code
    attrs: DepthwiseConv2DAttrs = ctx.op.attrs
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    params = prepare_conv(x, weights, out, attrs)
    kernel = weights.shape[1:3]
    window = _window(ctx, kernel, (attrs.stride_h, attrs.stride_w),
                     (attrs.dilation_h, attrs.dilation_w), (params.pad_h, params.pad_w),
                     params.input_offset)
    if ctx.dsp and (code := emit_dsp.depthwise_pixels(ctx, window)) is not None:
        return code
    if ctx.dsp and (code := emit_dsp.depthwise_dense(ctx, window)) is not None:
        return code
    requant = _requant(ctx, params, portable_arrays(ctx.graph, ctx.op, params))
    filter_symbol = ctx.pool.tensor(ctx.graph, ctx.op.inputs[1])
    common = (f"&{window}", f"&{requant}")
    if ctx.inplace is InPlace.DEPTHWISE:
        if attrs.depth_multiplier != 1 or x.shape[0] != 1:
            raise CodegenError(f"in-place depthwise '{ctx.op.name}' needs one image, multiplier 1")
        _require_scratch(ctx, scratch_bytes(ctx.graph, ctx.op, ctx.inplace))
        call = _call("mcuflow_dwconv_inplace_s8", *common, _input_pointer(ctx, 0), filter_symbol,
                     _output_pointer(ctx), ctx.scratch())
    elif kernel == (3, 3) and attrs.depth_multiplier == 1:
        call = _call("mcuflow_dwconv_3x3_s8", *common, _input_pointer(ctx, 0), filter_symbol,
                     _output_pointer(ctx))
    else:
        call = _call("mcuflow_dwconv_s8", f"&{window}", str(attrs.depth_multiplier),
                     f"&{requant}", _input_pointer(ctx, 0), filter_symbol, _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_dwconv",))


@emitter(OpKind.FULLY_CONNECTED)
def _fully_connected(ctx: EmitContext) -> LayerCode:
    if int16_step(ctx.graph, ctx.op):
        return _fully_connected_s16(ctx)
    if ctx.dsp and (code := emit_dsp.fully_connected(ctx)) is not None:
        return code
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    params = prepare_fully_connected(x, weights, out, ctx.op.attrs)
    if params.weights_offset != 0:
        raise CodegenError(f"FULLY_CONNECTED '{ctx.op.name}' has a weights zero point")
    units, depth = weights.shape
    bias, scale = (_define_array(ctx, a) for a in portable_arrays(ctx.graph, ctx.op, params))
    fields = _requant_fields(bias, "NULL", "NULL", scale, params.output_offset,
                             params.act_min, params.act_max)
    requant = _define(ctx, "mcuflow_requant_t", "requant", fields)
    call = _call("mcuflow_fully_connected_s8", str(x.size // depth), str(depth), str(units),
                 f"&{requant}", _input_pointer(ctx, 0),
                 ctx.pool.tensor(ctx.graph, ctx.op.inputs[1]), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_conv",))


# --- pooling and reductions ---------------------------------------------------------------------


@emitter(OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D)
def _pool(ctx: EmitContext) -> LayerCode:
    attrs: Pool2DAttrs = ctx.op.attrs
    params = prepare_pool(ctx.input(0), ctx.output(), attrs)
    window = _window(ctx, (attrs.filter_h, attrs.filter_w), (attrs.stride_h, attrs.stride_w),
                     (1, 1), (params.pad_h, params.pad_w), 0)
    args = (f"&{window}", c_int(params.act_min), c_int(params.act_max),
            _input_pointer(ctx, 0), _output_pointer(ctx))
    if int16_step(ctx.graph, ctx.op):
        return _pool_s16(ctx, args[:3])
    if ctx.op.kind is OpKind.MAX_POOL_2D:
        return _code(ctx, _call("mcuflow_max_pool_s8", *args), ("mcuflow_pool",))
    call = (f"if (mcuflow_avg_pool_s8({', '.join(args)}) != 0) {{\n"
            "    return MCUFLOW_ERROR_KERNEL;\n}")
    return _code(ctx, call, ("mcuflow_pool",))


def _padded(values: list[int], fill: int = 0) -> str:
    return "{" + ", ".join(c_int(v) for v in values + [fill] * (MAX_RANK - len(values))) + "}"


@emitter(OpKind.MEAN)
def _mean(ctx: EmitContext) -> LayerCode:
    return _mean_kernel(ctx, prepare_mean(ctx.input(0), ctx.output(), ctx.op.attrs))


@emitter(OpKind.SUM)
def _sum(ctx: EmitContext) -> LayerCode:
    return _mean_kernel(ctx, prepare_sum(ctx.input(0), ctx.output(), ctx.op.attrs))


def _mean_kernel(ctx: EmitContext, params: MeanParams) -> LayerCode:
    """mcuflow_mean_s8 with MEAN's constants or SUM's (the same arithmetic, no 1/count)."""
    attrs: MeanAttrs = ctx.op.attrs
    x = ctx.input(0)
    axes = {axis % len(x.shape) for axis in attrs.axes}
    dims, reduced = merge_dims(x.shape, [d in axes for d in range(len(x.shape))])
    _require_rank(ctx, len(dims))
    fields = {
        "rank": len(dims), "dims": _padded(dims), "reduced": _padded([int(r) for r in reduced]),
        "input_zero_point": params.input_zero_point,
        "output_zero_point": params.output_zero_point,
        "multiplier": params.multiplier, "shift": params.shift, "count": params.count,
    }
    symbol = _define(ctx, "mcuflow_mean_t", "mean", fields)
    if int16_step(ctx.graph, ctx.op):
        call = _call("mcuflow_mean_s16", f"&{symbol}", ctx.pointer(x.name, "S16"),
                     ctx.pointer(ctx.op.outputs[0], "S16"))
        return _code(ctx, call, ("mcuflow_mean",))
    call = _call("mcuflow_mean_s8", f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_mean",))


def _require_rank(ctx: EmitContext, rank: int) -> None:
    """Assert the C kernels' rank limit (the rank_at_most_5 constraint refuses more)."""
    if rank > MAX_RANK:
        raise CodegenError(f"{ctx.op.kind.value} '{ctx.op.name}' needs {rank} dims, the C "
                           f"kernels handle {MAX_RANK}, which rank_at_most_5 should refuse")


# --- element-wise -------------------------------------------------------------------------------

_BINARY_OP = {OpKind.ADD: "MCUFLOW_ADD", OpKind.SUB: "MCUFLOW_SUB", OpKind.MUL: "MCUFLOW_MUL"}


def _broadcast(ctx: EmitContext) -> str:
    """The mcuflow_broadcast_t of a two-input element-wise op: its symbol."""
    dims, stride1, stride2 = broadcast_layout(ctx.input(0).shape, ctx.input(1).shape,
                                              ctx.output().shape)
    _require_rank(ctx, len(dims))
    return _define(ctx, "mcuflow_broadcast_t", "broadcast", {
        "rank": len(dims), "dims": _padded(dims), "stride1": _padded(stride1),
        "stride2": _padded(stride2)})


@emitter(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def _binary(ctx: EmitContext) -> LayerCode:
    x1, x2, out = ctx.input(0), ctx.input(1), ctx.output()
    layout = _broadcast(ctx)
    if int16_step(ctx.graph, ctx.op):
        return _binary_s16(ctx, layout)
    if ctx.dsp and (code := emit_dsp.add(ctx, layout)) is not None:
        return code
    fields: dict[str, int | str] = {"op": _BINARY_OP[ctx.op.kind]}
    if ctx.op.kind is OpKind.MUL:
        m = prepare_mul(x1, x2, out, ctx.op.attrs)
        fields |= {"input1_offset": m.input1_offset, "input2_offset": m.input2_offset,
                   "output_offset": m.output_offset, "output_multiplier": m.output_multiplier,
                   "output_shift": m.output_shift, "act_min": m.act_min, "act_max": m.act_max}
    else:
        a = prepare_add(x1, x2, out, ctx.op.attrs)
        fields |= {"input1_offset": a.input1_offset, "input2_offset": a.input2_offset,
                   "output_offset": a.output_offset, "left_shift": a.left_shift,
                   "input1_multiplier": a.input1_multiplier, "input1_shift": a.input1_shift,
                   "input2_multiplier": a.input2_multiplier, "input2_shift": a.input2_shift,
                   "output_multiplier": a.output_multiplier, "output_shift": a.output_shift,
                   "act_min": a.act_min, "act_max": a.act_max}
    params = _define(ctx, "mcuflow_binary_t", "params", fields)
    call = _call("mcuflow_binary_s8", f"&{params}", f"&{layout}", _input_pointer(ctx, 0),
                 _input_pointer(ctx, 1), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_elementwise",))


@emitter(OpKind.MAXIMUM, OpKind.MINIMUM)
def _maximum_minimum(ctx: EmitContext) -> LayerCode:
    maximum = int(ctx.op.kind is OpKind.MAXIMUM)
    call = _call("mcuflow_maximum_minimum_s8", f"&{_broadcast(ctx)}", str(maximum),
                 _input_pointer(ctx, 0), _input_pointer(ctx, 1), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_maximum_minimum",))


@emitter(OpKind.RELU, OpKind.RELU6, OpKind.LEAKY_RELU, OpKind.HARD_SWISH, OpKind.LOGISTIC,
         OpKind.TANH)
def _unary(ctx: EmitContext) -> LayerCode:
    if int16_step(ctx.graph, ctx.op):
        return _sigmoid_s16(ctx)
    table = ctx.constant("table", "int8_t", lookup_table_s8(ctx.graph, ctx.op),
                         f"{ctx.op.name}: {ctx.op.kind.value} of every int8 input")
    call = _call("mcuflow_lookup_s8", table, _input_pointer(ctx, 0), _output_pointer(ctx),
                 str(ctx.output().size))
    return _code(ctx, call, ("mcuflow_lookup",))


@emitter(OpKind.QUANTIZE)
def _quantize(ctx: EmitContext) -> LayerCode:
    x, out = ctx.input(0), ctx.output()
    if DType.INT16 in (x.dtype, out.dtype):
        return _quantize_s16(ctx)
    if x.dtype in (DType.INT8, DType.UINT8):
        return _unary(ctx)
    quant = ctx.quant(out.name)
    call = _call("mcuflow_quantize_f32", c_float(quant.scale0), c_int(quant.zero_point0),
                 ctx.pointer(x.name, "U8"), _output_pointer(ctx), str(out.size))
    return _code(ctx, call, ("mcuflow_lookup",))


@emitter(OpKind.DEQUANTIZE)
def _dequantize(ctx: EmitContext) -> LayerCode:
    if ctx.input(0).dtype is DType.INT16:
        quant = ctx.quant(ctx.op.inputs[0])
        call = _call("mcuflow_dequantize_s16", c_double(quant.scale0),
                     ctx.pointer(ctx.op.inputs[0], "S16"), ctx.pointer(ctx.op.outputs[0], "U8"),
                     str(ctx.output().size))
        return _code(ctx, call, ("mcuflow_s16",))
    table = ctx.constant("table", "float", lookup_table_f32(ctx.graph, ctx.op),
                         f"{ctx.op.name}: float value of every int8 input")
    call = _call("mcuflow_lookup_f32", table, _input_pointer(ctx, 0),
                 ctx.pointer(ctx.op.outputs[0], "U8"), str(ctx.output().size))
    return _code(ctx, call, ("mcuflow_lookup",))


@emitter(OpKind.SOFTMAX)
def _softmax(ctx: EmitContext) -> LayerCode:
    attrs: SoftmaxAttrs = ctx.op.attrs
    x = ctx.input(0)
    if int16_step(ctx.graph, ctx.op):
        return _softmax_s16(ctx)
    params = prepare_softmax(x, attrs)
    table = ctx.constant("exp", "int32_t", softmax_exp_table(params),
                         f"{ctx.op.name}: exp of every scaled difference from the row maximum")
    depth = x.shape[-1]
    symbol = _define(ctx, "mcuflow_softmax_t", "softmax", {
        "rows": x.size // depth, "depth": depth, "diff_min": params.diff_min,
        "exp_table": table})
    call = _call("mcuflow_softmax_s8", f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_softmax",))


# --- data movement ------------------------------------------------------------------------------


def _same_offset(ctx: EmitContext, shared: str, name: str) -> None:
    if ctx.offset(shared) != ctx.offset(name):
        raise CodegenError(f"step {ctx.layer}: '{name}' is planned in place but not at the "
                           f"offset of '{shared}'")


@emitter(OpKind.RESHAPE, OpKind.SQUEEZE, OpKind.EXPAND_DIMS)
def _reshape(ctx: EmitContext) -> LayerCode:
    source, target = ctx.op.inputs[0], ctx.op.outputs[0]
    if ctx.inplace is InPlace.ALIAS or ctx.offset(source) == ctx.offset(target):
        _same_offset(ctx, source, target)
        return LayerCode([])
    nbytes = ctx.output().nbytes
    call = _call("mcuflow_copy_rows", ctx.pointer(source, "U8"), "0", ctx.pointer(target, "U8"),
                 "0", "1", str(nbytes))
    return _code(ctx, call, ("mcuflow_data",))


@emitter(OpKind.CONCATENATION)
def _concatenation(ctx: EmitContext) -> LayerCode:
    attrs: ConcatenationAttrs = ctx.op.attrs
    out = ctx.output()
    outer = math.prod(out.shape[:attrs.axis])
    out_row = math.prod(out.shape[attrs.axis:]) * out.dtype.itemsize
    if ctx.inplace is InPlace.CONCAT_SLICE:
        for name, slot in zip(ctx.op.inputs, concat_slots(ctx.graph, ctx.op), strict=True):
            if ctx.offset(name) != ctx.offset(out.name) + slot.offset:
                raise CodegenError(f"concat slice '{name}' is not at its planned place")
        return LayerCode([], ctx.definitions, frozenset())
    calls = []
    offset = 0
    for name in ctx.op.inputs:
        tensor: Tensor = ctx.tensor(name)
        row = math.prod(tensor.shape[attrs.axis:]) * tensor.dtype.itemsize
        calls.append(_call(
            "mcuflow_copy_rows", ctx.pointer(name, "U8"), str(row),
            f"MCUFLOW_U8({ctx.offset(out.name) + offset})", str(out_row), str(outer), str(row)))
        offset += row
    return LayerCode(calls, ctx.definitions, frozenset({"mcuflow_data"}))


def _read_input(ctx: EmitContext, index: int) -> LayerCode:
    """A window of a streamed input, fetched by the input reader (see render._reader_source)."""
    attrs: SliceAttrs = ctx.op.attrs
    if len(attrs.begin) != 4:
        raise CodegenError(f"streamed input '{ctx.op.inputs[0]}' is not NHWC")
    begin, size = ", ".join(map(str, attrs.begin)), ", ".join(map(str, attrs.size))
    return LayerCode([
        "{",
        f"    static const int32_t begin[4] = {{{begin}}}, size[4] = {{{size}}};",
        f"    if (MCUFLOW_READ_INPUT({index}, begin, size, {_output_pointer(ctx)}) != 0) {{",
        "        return MCUFLOW_ERROR_INPUT;",
        "    }",
        "}",
    ])


def _spill_access(call: str) -> list[str]:
    """A spill write or read (render._spill_macros); a failed one ends the run."""
    return [f"if ({call} != 0) {{", "    return MCUFLOW_ERROR_STORAGE;", "}"]


def _sealed_access(call: str) -> list[str]:
    """An encrypted spill's write or read: a status but MCUFLOW_OK (storage, tag) ends the run."""
    return ["{", f"    const int sealed = {call};", "    if (sealed != MCUFLOW_OK) {",
            "        return sealed;", "    }", "}"]


def _row_bytes(tensor: Tensor) -> int:
    """Bytes of one full-width row of an NHWC tensor."""
    return math.prod(tensor.shape[2:]) * tensor.dtype.itemsize


def _spill_writes(ctx: EmitContext) -> list[str]:
    """Writes of the step's spilled outputs to the spill area.

    Encrypted, each is encrypted in place row by row and written with its rows' tags after
    it: its buffer must hold nothing live after this step.
    """
    offsets = ctx.plan.spill_offsets
    spilled = [name for name in ctx.op.outputs if name in ctx.plan.spilled]
    if not ctx.plan.spill_encrypted:
        return [line for name in spilled
                for line in _spill_access(f"MCUFLOW_SPILL_WRITE({offsets[name]}u, "
                                          f"{ctx.pointer(name, 'U8')}, "
                                          f"{ctx.tensor(name).nbytes}u)")]
    for name in spilled:
        _check_dead_after(ctx, name)
    return [line for name in spilled
            for line in _sealed_access(f"MCUFLOW_SPILL_SEAL({offsets[name]}u, "
                                       f"{ctx.pointer(name, 'U8')}, "
                                       f"{_row_bytes(ctx.tensor(name))}u, "
                                       f"{ctx.tensor(name).shape[1]}u)")]


def _check_dead_after(ctx: EmitContext, name: str) -> None:
    """CodegenError when a view of `name`'s storage is read after this step.

    Buffers of other storages sharing its bytes are dead after its step (check_plan), as it
    is live at its step only.
    """
    own = ctx.plan.buffers[name]
    for other, buffer in ctx.plan.buffers.items():
        if (other != name and buffer.owner == own.owner and buffer.last_step > ctx.layer
                and buffer.offset < own.end and own.offset < buffer.end):
            raise CodegenError(f"step {ctx.layer} would encrypt spilled '{name}' in place over "
                               f"'{other}', which is read later")


def _read_spilled(ctx: EmitContext) -> LayerCode:
    """Rows of a spilled tensor read back from the spill area: one read (full-width rows)."""
    attrs: SliceAttrs = ctx.op.attrs
    source = ctx.tensor(ctx.op.inputs[0])
    if (len(attrs.begin) != 4 or attrs.begin[2] != 0 or attrs.begin[3] != 0
            or tuple(attrs.size[2:]) != tuple(source.shape[2:])):
        raise CodegenError(f"step {ctx.layer} reads a window of spilled '{source.name}' that is "
                           "not whole rows")
    row = _row_bytes(source)
    start = ctx.plan.spill_offsets[source.name]
    at = start + attrs.begin[1] * row
    if ctx.plan.spill_encrypted:
        tags = start + source.nbytes + TAG_BYTES * attrs.begin[1]
        return LayerCode(_sealed_access(f"MCUFLOW_SPILL_OPEN({at}u, {tags}u, "
                                        f"{_output_pointer(ctx)}, {row}u, {attrs.size[1]}u)"))
    return LayerCode(_spill_access(
        f"MCUFLOW_SPILL_READ({at}u, {_output_pointer(ctx)}, {attrs.size[1] * row}u)"))


@emitter(OpKind.PAD)
def _pad(ctx: EmitContext) -> LayerCode:
    attrs: PadAttrs = ctx.op.attrs
    x, out = ctx.input(0), ctx.output()
    _require_rank(ctx, len(x.shape))
    befores = _in_bytes([before for before, _ in attrs.paddings], x)
    symbol = _define(ctx, "mcuflow_pad_t", "pad", {
        "rank": len(x.shape), "in_dims": _padded(_in_bytes(list(x.shape), x)),
        "before": _padded(befores), "out_dims": _padded(_in_bytes(list(out.shape), x))})
    call = _call("mcuflow_pad_s8", f"&{symbol}", c_int(ctx.quant(out.name).zero_point0),
                 _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_data",))


def _in_bytes(dims: list[int], tensor: Tensor) -> list[int]:
    """`dims` with the last, a contiguous run of `tensor`'s elements, counted in bytes."""
    return [*dims[:-1], dims[-1] * tensor.dtype.itemsize]


@emitter(OpKind.SLICE)
def _slice(ctx: EmitContext) -> LayerCode:
    source = ctx.op.inputs[0]
    if source in ctx.plan.streamed:
        return _read_input(ctx, ctx.graph.inputs.index(source))
    if source in ctx.plan.spilled:
        return _read_spilled(ctx)
    if ctx.inplace is InPlace.ALIAS:
        place = ctx.offset(ctx.op.inputs[0]) + alias_offset(ctx.graph, ctx.op)
        if ctx.offset(ctx.op.outputs[0]) != place:
            raise CodegenError(f"step {ctx.layer}: the view '{ctx.op.outputs[0]}' is not at its "
                               "planned place")
        return LayerCode([])
    layout = slice_layout(ctx.graph, ctx.op)
    _require_rank(ctx, len(layout.in_dims))
    if slice_kernel(ctx.graph, ctx.op) == "mcuflow_copy_rows":
        itemsize = ctx.input(0).dtype.itemsize
        start = f" + {layout.start * itemsize}" if layout.start else ""
        row = str(layout.out_dims[-1] * itemsize)
        call = _call("mcuflow_copy_rows", ctx.pointer(ctx.op.inputs[0], "U8") + start,
                     str(layout.in_dims[-1] * itemsize), ctx.pointer(ctx.op.outputs[0], "U8"),
                     row, str(layout.runs), row)
        return _code(ctx, call, ("mcuflow_data",))
    x = ctx.input(0)
    symbol = _define(ctx, "mcuflow_slice_t", "slice", {
        "rank": len(layout.in_dims), "in_dims": _padded(_in_bytes(list(layout.in_dims), x)),
        "begin": _padded(_in_bytes(list(layout.begin), x)),
        "out_dims": _padded(_in_bytes(list(layout.out_dims), x))})
    call = _call("mcuflow_slice_s8", f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_data",))


@emitter(OpKind.RESIZE_NEAREST_NEIGHBOR)
def _resize_nearest(ctx: EmitContext) -> LayerCode:
    x, out = ctx.input(0), ctx.output()
    tables = prepare_resize(x.shape, ctx.op.attrs)
    rows = ctx.constant("rows", "int32_t", tables.rows, f"{ctx.op.name}: source row of each "
                        "output row")
    cols = ctx.constant("cols", "int32_t", tables.cols, f"{ctx.op.name}: source column of each "
                        "output column")
    n, in_h, in_w, channels = x.shape
    _, out_h, out_w, _ = out.shape
    symbol = _define(ctx, "mcuflow_resize_t", "resize", {
        "batches": n, "in_h": in_h, "in_w": in_w, "channels": channels * x.dtype.itemsize,
        "out_h": out_h,
        "out_w": out_w, "rows": rows, "cols": cols})
    call = _call("mcuflow_resize_nearest_s8", f"&{symbol}", _input_pointer(ctx, 0),
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_resize",))


# --- REDUCE_MAX, REDUCE_MIN, ARG_MAX, ARG_MIN ---------------------------------------------------


@emitter(OpKind.REDUCE_MAX, OpKind.REDUCE_MIN)
def _reduce_extreme(ctx: EmitContext) -> LayerCode:
    x = ctx.input(0)
    axes = {axis % len(x.shape) for axis in ctx.op.attrs.axes}
    dims, reduced = merge_dims(x.shape, [d in axes for d in range(len(x.shape))])
    _require_rank(ctx, len(dims))
    symbol = _define(ctx, "mcuflow_reduce_t", "reduce", {
        "rank": len(dims), "dims": _padded(dims), "reduced": _padded([int(r) for r in reduced])})
    maximum = str(int(ctx.op.kind is OpKind.REDUCE_MAX))
    call = _call("mcuflow_reduce_extreme_s8", f"&{symbol}", maximum, _input_pointer(ctx, 0),
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_reduce",))


@emitter(OpKind.ARG_MAX, OpKind.ARG_MIN)
def _arg_extreme(ctx: EmitContext) -> LayerCode:
    outer, axis, inner = arg_layout(ctx.graph, ctx.op)
    maximum = str(int(ctx.op.kind is OpKind.ARG_MAX))
    call = _call("mcuflow_arg_extreme_s8", str(outer), str(axis), str(inner), maximum,
                 str(ctx.output().dtype.itemsize), _input_pointer(ctx, 0),
                 ctx.pointer(ctx.op.outputs[0], "U8"))
    return _code(ctx, call, ("mcuflow_reduce",))


# --- SQUARED_DIFFERENCE, PRELU (mcuflow_binary_s8), ABS (a table), L2_NORMALIZATION, LOG_SOFTMAX


@emitter(OpKind.SQUARED_DIFFERENCE)
def _squared_difference(ctx: EmitContext) -> LayerCode:
    p = prepare_squared_difference(ctx.input(0), ctx.input(1), ctx.output())
    return _binary_call(ctx, {
        "op": "MCUFLOW_SQUARED_DIFFERENCE", "input1_offset": p.input1_offset,
        "input2_offset": p.input2_offset, "output_offset": p.output_offset,
        "left_shift": SQUARED_DIFFERENCE_LEFT_SHIFT, "input1_multiplier": p.input1_multiplier,
        "input1_shift": p.input1_shift, "input2_multiplier": p.input2_multiplier,
        "input2_shift": p.input2_shift, "output_multiplier": p.output_multiplier,
        "output_shift": p.output_shift, "act_min": -128, "act_max": 127})


@emitter(OpKind.PRELU)
def _prelu(ctx: EmitContext) -> LayerCode:
    p = prepare_prelu(ctx.input(0), ctx.input(1), ctx.output())
    return _binary_call(ctx, {
        "op": "MCUFLOW_PRELU", "input1_offset": p.input_offset, "input2_offset": p.alpha_offset,
        "output_offset": p.output_offset, "input1_multiplier": p.identity_multiplier,
        "input1_shift": p.identity_shift, "output_multiplier": p.alpha_multiplier,
        "output_shift": p.alpha_shift, "act_min": -128, "act_max": 127})


def _binary_call(ctx: EmitContext, fields: dict[str, int | str]) -> LayerCode:
    """mcuflow_binary_s8 with `fields` over the step's broadcast layout."""
    layout = _broadcast(ctx)
    params = _define(ctx, "mcuflow_binary_t", "params", fields)
    call = _call("mcuflow_binary_s8", f"&{params}", f"&{layout}", _input_pointer(ctx, 0),
                 _input_pointer(ctx, 1), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_elementwise",))


emitter(OpKind.ABS)(_unary)


@emitter(OpKind.L2_NORMALIZATION)
def _l2_normalization(ctx: EmitContext) -> LayerCode:
    x = ctx.input(0)
    depth = x.shape[-1]
    call = _call("mcuflow_l2_normalization_s8", str(x.size // depth), str(depth),
                 c_int(ctx.quant(x.name).zero_point0),
                 _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_softmax",))


@emitter(OpKind.LOG_SOFTMAX)
def _log_softmax(ctx: EmitContext) -> LayerCode:
    x = ctx.input(0)
    params = prepare_log_softmax(x)
    table = ctx.constant("exp", "int32_t", softmax_exp_table(params.softmax),
                         f"{ctx.op.name}: exp of every scaled difference from the row maximum")
    depth = x.shape[-1]
    symbol = _define(ctx, "mcuflow_log_softmax_t", "log_softmax", {
        "rows": x.size // depth, "depth": depth, "diff_min": params.softmax.diff_min,
        "input_multiplier": params.softmax.input_multiplier,
        "input_shift": params.softmax.input_left_shift,
        "reverse_multiplier": params.reverse_multiplier, "reverse_shift": params.reverse_shift,
        "exp_table": table})
    call = _call("mcuflow_log_softmax_s8", f"&{symbol}", _input_pointer(ctx, 0),
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_softmax",))


# --- TRANSPOSE_CONV -------------------------------------------------------------------------------


@emitter(OpKind.TRANSPOSE_CONV)
def _transpose_conv(ctx: EmitContext) -> LayerCode:
    if ctx.dsp and (code := emit_dsp.transpose_conv(ctx)) is not None:
        return code
    x, weights, out = ctx.input(0), ctx.input(1), ctx.output()
    params = prepare_transpose_conv(x, weights, out, ctx.op.attrs)
    window = _window(ctx, weights.shape[1:3], (params.stride_h, params.stride_w), (1, 1),
                     (params.pad_h, params.pad_w), params.input_offset)
    bias = _bias_array(ctx.graph, ctx.op, weights.data, params.input_offset, fold=False)
    requant = _requant(ctx, params, (bias, *_requant_arrays(params)))
    args = [f"&{window}", f"&{requant}", _input_pointer(ctx, 0),
            ctx.pool.tensor(ctx.graph, ctx.op.inputs[1]), _output_pointer(ctx)]
    chosen = KERNELS[transpose_conv_kernel(ctx.graph, ctx.op, ctx.dsp)]
    if chosen.dsp:
        _require_scratch(ctx, chosen.scratch_bytes(ctx.graph, ctx.op, ctx.inplace))
        args.append(ctx.scratch())
    return _code(ctx, _call(chosen.function, *args), (chosen.source,))


# --- RESIZE_BILINEAR, TILE, DEPTH_TO_SPACE, SPACE_TO_DEPTH ---------------------------------------


@emitter(OpKind.RESIZE_BILINEAR)
def _resize_bilinear(ctx: EmitContext) -> LayerCode:
    x, out = ctx.input(0), ctx.output()
    tables = prepare_bilinear(x.shape, ctx.op.attrs)
    rows = ctx.constant("rows", "int32_t", np.stack(
        [tables.rows.lower, tables.rows.upper, tables.rows.weight], axis=1).reshape(-1),
        f"{ctx.op.name}: lower and upper source row and weight (1/1024) of each output row")
    cols = ctx.constant("cols", "int32_t", np.stack(
        [tables.cols.lower, tables.cols.upper, tables.cols.weight], axis=1).reshape(-1),
        f"{ctx.op.name}: left and right source column and weight (1/1024) of each output column")
    n, in_h, in_w, channels = x.shape
    _, out_h, out_w, _ = out.shape
    symbol = _define(ctx, "mcuflow_resize_bilinear_t", "resize", {
        "batches": n, "in_h": in_h, "in_w": in_w, "channels": channels, "out_h": out_h,
        "out_w": out_w, "rows": rows, "cols": cols})
    call = _call("mcuflow_resize_bilinear_s8", f"&{symbol}", _input_pointer(ctx, 0),
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_resize_bilinear",))


@emitter(OpKind.TILE, OpKind.BROADCAST_TO)
def _tile(ctx: EmitContext) -> LayerCode:
    dims, multiples = tile_of(ctx.graph, ctx.op)
    _require_rank(ctx, len(dims))
    symbol = _define(ctx, "mcuflow_tile_t", "tile", {
        "rank": len(dims), "dims": _padded(dims), "multiples": _padded(multiples, 1)})
    call = _call("mcuflow_tile_s8", f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_tile",))


@emitter(OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH)
def _depth_space(ctx: EmitContext) -> LayerCode:
    to_space = ctx.op.kind is OpKind.DEPTH_TO_SPACE
    n, height, width, depth = (ctx.output() if to_space else ctx.input(0)).shape
    phases = depth_to_space_phases(ctx.op.attrs)
    symbol = _define(ctx, "mcuflow_depth_space_t", "blocks", {
        "batches": n, "space_h": height, "space_w": width, "space_c": depth,
        "block": ctx.op.attrs.block_size, "phase_h": phases[0], "phase_w": phases[1]})
    function = "mcuflow_depth_to_space_s8" if to_space else "mcuflow_space_to_depth_s8"
    call = _call(function, f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_depth_space",))


# --- SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND -------------------------------------------------------


@emitter(OpKind.SPACE_TO_BATCH_ND, OpKind.BATCH_TO_SPACE_ND)
def _batch_space(ctx: EmitContext) -> LayerCode:
    layout = batch_space_layout(ctx.graph, ctx.op)
    symbol = _define(ctx, "mcuflow_batch_space_t", "batch_space", dataclasses.asdict(layout))
    if ctx.op.kind is OpKind.SPACE_TO_BATCH_ND:
        call = _call("mcuflow_space_to_batch_s8", f"&{symbol}",
                     c_int(ctx.quant(ctx.op.outputs[0]).zero_point0), _input_pointer(ctx, 0),
                     _output_pointer(ctx))
    else:
        call = _call("mcuflow_batch_to_space_s8", f"&{symbol}", _input_pointer(ctx, 0),
                     _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_batch_space",))


# --- SVDF ---------------------------------------------------------------------------------------


@emitter(OpKind.SVDF)
def _svdf(ctx: EmitContext) -> LayerCode:
    if ctx.dsp and (code := emit_dsp.svdf(ctx)) is not None:
        return code
    params = prepare_svdf(ctx.graph, ctx.op)
    bias = svdf_bias(ctx.op)
    state = ctx.op.inputs[STATE_INPUT]
    symbol = _define(ctx, "mcuflow_svdf_t", "svdf", {
        "batches": params.batch, "input_size": ctx.input(0).shape[1], "filters": params.filters,
        "memory": params.memory, "rank": params.rank, "input_offset": -params.input_offset,
        "output_offset": params.output_offset,
        "feature_multiplier": params.feature.multiplier, "feature_shift": params.feature.shift,
        "time_multiplier": params.time.multiplier, "time_shift": params.time.shift,
        "weights_feature": ctx.pool.tensor(ctx.graph, ctx.op.inputs[1]),
        "weights_time": ctx.pool.tensor(ctx.graph, ctx.op.inputs[2]),
        "bias": "NULL" if bias is None else ctx.pool.tensor(ctx.graph, bias)})
    call = _call("mcuflow_svdf_s8", f"&{symbol}", _input_pointer(ctx, 0), ctx.state(state),
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_svdf",))


# --- UNIDIRECTIONAL_SEQUENCE_LSTM ---------------------------------------------------------------


def _c_list(values: list[int]) -> str:
    return "{" + ", ".join(c_int(v) for v in values) + "}"


@emitter(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM)
def _lstm(ctx: EmitContext) -> LayerCode:
    if ctx.dsp and (code := lstm_dsp.lstm(ctx, _input_pointer(ctx, 0),
                                          _output_pointer(ctx))) is not None:
        return code
    p = prepare_lstm(ctx.graph, ctx.op)
    biases = np.stack([p.input_bias, p.recurrent_bias])
    if np.abs(biases).max(initial=0) >= 1 << 31:
        raise CodegenError(f"UNIDIRECTIONAL_SEQUENCE_LSTM '{ctx.op.name}': a bias plus zero "
                           "point times weight sum exceeds int32")
    input_bias = ctx.constant("input_bias", "int32_t", p.input_bias.astype(np.int32),
                              f"{ctx.op.name}: gate biases - input zero point * row sums")
    recurrent_bias = ctx.constant("recurrent_bias", "int32_t", p.recurrent_bias.astype(np.int32),
                                  f"{ctx.op.name}: - output zero point * recurrent row sums")
    weights = [ctx.pool.tensor(ctx.graph, name) for name in ctx.op.inputs[1:9]]
    symbol = _define(ctx, "mcuflow_lstm_t", "lstm", {
        "batch": p.batch, "time": p.time, "features": p.features, "units": p.units,
        "time_major": int(p.time_major), "input_weights": "{" + ", ".join(weights[:4]) + "}",
        "recurrent_weights": "{" + ", ".join(weights[4:]) + "}",
        "input_bias": input_bias, "recurrent_bias": recurrent_bias,
        "input_multiplier": _c_list([m.multiplier for m in p.input_multipliers]),
        "input_shift": _c_list([m.shift for m in p.input_multipliers]),
        "recurrent_multiplier": _c_list([m.multiplier for m in p.recurrent_multipliers]),
        "recurrent_shift": _c_list([m.shift for m in p.recurrent_multipliers]),
        "cell_exponent": p.cell_exponent, "hidden_multiplier": p.hidden.multiplier,
        "hidden_shift": p.hidden.shift, "hidden_zero_point": p.hidden_zero_point,
        "cell_clip": p.cell_clip})
    call = _call("mcuflow_lstm_s8", f"&{symbol}", _input_pointer(ctx, 0), _output_pointer(ctx),
                 ctx.state(ctx.op.inputs[LSTM_OUTPUT_STATE]),
                 ctx.state(ctx.op.inputs[LSTM_CELL_STATE]), f"(int16_t *){ctx.scratch()}")
    return _code(ctx, call, ("mcuflow_lstm",))


# --- STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK, TRANSPOSE, GATHER -----------------------------


@emitter(OpKind.STRIDED_SLICE)
def _strided_slice(ctx: EmitContext) -> LayerCode:
    """A plain slice runs as SLICE (a view when planned in place), else a strided read."""
    if box_of(ctx.graph, ctx.op) is not None:
        return _slice(ctx)
    return _strided_copy(ctx)


@emitter(OpKind.TRANSPOSE, OpKind.REVERSE_V2)
def _strided_copy(ctx: EmitContext) -> LayerCode:
    layout = strided_layout(ctx.graph, ctx.op)
    _require_rank(ctx, len(layout.dims))
    itemsize = ctx.input(0).dtype.itemsize
    symbol = _define(ctx, "mcuflow_strided_t", "strided", {
        "rank": len(layout.dims), "dims": _padded(list(layout.dims)),
        "steps": _padded(list(layout.steps)), "element_bytes": itemsize})
    start = f" + {layout.start * itemsize}" if layout.start else ""
    call = _call("mcuflow_strided_copy_s8", f"&{symbol}", _input_pointer(ctx, 0) + start,
                 _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_shuffle",))


@emitter(OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK, OpKind.PACK)
def _pieces(ctx: EmitContext) -> LayerCode:
    if ctx.inplace is InPlace.ALIAS:
        views = piece_views(ctx.graph, ctx.op) or []
        places = [ctx.offset(ctx.op.inputs[0]) + at for at in views]
        if [ctx.offset(name) for name in ctx.op.outputs] != places:
            raise CodegenError(f"step {ctx.layer}: the pieces of '{ctx.op.name}' are not at "
                               "their planned places")
        return LayerCode([])
    calls = []
    for c in piece_copies(ctx.graph, ctx.op):
        source = ctx.pointer(ctx.op.inputs[c.input], "U8")
        target = ctx.pointer(ctx.op.outputs[c.output], "U8")
        calls.append(_call(
            "mcuflow_copy_rows", source + (f" + {c.in_offset}" if c.in_offset else ""),
            str(c.in_step), target + (f" + {c.out_offset}" if c.out_offset else ""),
            str(c.out_step), str(c.rows), str(c.row_bytes)))
    return LayerCode(calls, ctx.definitions, frozenset({"mcuflow_data"}))


@emitter(OpKind.GATHER)
def _gather(ctx: EmitContext) -> LayerCode:
    outer, axis_size, inner = gather_layout(ctx.graph, ctx.op)
    indices = ctx.op.attrs.indices
    table = ctx.constant("indices", "int32_t", np.asarray(indices, np.int32),
                         f"{ctx.op.name}: the gathered slices")
    call = _call("mcuflow_gather_s8", str(outer), str(axis_size), str(len(indices)), str(inner),
                 table, _input_pointer(ctx, 0), _output_pointer(ctx))
    return _code(ctx, call, ("mcuflow_shuffle",))


# --- LiteRT's int16x8 scheme (int16 activations, int8 weights, int64 bias) ----------------------


def _requant_s16(ctx: EmitContext, multipliers: str, shifts: str, scale: str, act_min: int,
                 act_max: int) -> str:
    """Define the mcuflow_requant_s16_t of a 16x8 layer (bias from its third input)."""
    bias = "NULL"
    if len(ctx.op.inputs) > 2:
        bias = ctx.constant("bias", "int64_t", ctx.input(2).data.astype(np.int64),
                            f"{ctx.op.name}: int64 bias")
    return _define(ctx, "mcuflow_requant_s16_t", "requant", {
        "bias": bias, "multiplier": multipliers, "shift": shifts, "scale": scale,
        "act_min": act_min, "act_max": act_max})


def _window_s16(ctx: EmitContext) -> LayerCode:
    """A 16x8 CONV_2D or DEPTHWISE_CONV_2D: mcuflow_conv2d_s16 / mcuflow_dwconv_s16."""
    attrs: Conv2DAttrs | DepthwiseConv2DAttrs = ctx.op.attrs
    weights = ctx.input(1)
    params: ConvS16Params = prepare_conv_s16(ctx.input(0), weights, ctx.output(), attrs)
    window = _window(ctx, weights.shape[1:3], (attrs.stride_h, attrs.stride_w),
                     (attrs.dilation_h, attrs.dilation_w), (params.pad_h, params.pad_w), 0)
    if ctx.dsp and ctx.op.kind is OpKind.CONV_2D and (
            code := emit_s16_dsp.conv2d(ctx, window)) is not None:
        return code
    multipliers = ctx.constant("multiplier", "int32_t", np.array(params.multipliers, np.int32),
                               f"{ctx.op.name}: Q31 multipliers")
    shifts = ctx.constant("shift", "int32_t", np.array(params.shifts, np.int32),
                          f"{ctx.op.name}: shifts")
    requant = _requant_s16(ctx, multipliers, shifts, "NULL", params.act_min, params.act_max)
    pointers = (ctx.pointer(ctx.op.inputs[0], "S16"), ctx.pool.tensor(ctx.graph, weights.name),
                ctx.pointer(ctx.op.outputs[0], "S16"))
    if ctx.op.kind is OpKind.CONV_2D:
        call = _call("mcuflow_conv2d_s16", f"&{window}", f"&{requant}", *pointers)
    else:
        call = _call("mcuflow_dwconv_s16", f"&{window}", str(attrs.depth_multiplier),
                     f"&{requant}", *pointers)
    return _code(ctx, call, ("mcuflow_s16",))


def _window_of_s16(ctx: EmitContext) -> str:
    """Define the mcuflow_window_t of a 16x8 window step (input zero point 0)."""
    attrs: Conv2DAttrs | DepthwiseConv2DAttrs = ctx.op.attrs
    params = prepare_conv_s16(ctx.input(0), ctx.input(1), ctx.output(), attrs)
    return _window(ctx, ctx.input(1).shape[1:3], (attrs.stride_h, attrs.stride_w),
                   (attrs.dilation_h, attrs.dilation_w), (params.pad_h, params.pad_w), 0)


def _fully_connected_s16(ctx: EmitContext) -> LayerCode:
    """A 16x8 FULLY_CONNECTED: mcuflow_fully_connected_s16 with double-precision scales."""
    if ctx.dsp and (code := emit_s16_dsp.fully_connected(ctx)) is not None:
        return code
    x, weights = ctx.input(0), ctx.input(1)
    params = prepare_fully_connected_s16(x, weights, ctx.output(), ctx.op.attrs)
    units, depth = weights.shape
    scale = ctx.constant("scale", "double", np.array(params.scales, np.float64),
                         f"{ctx.op.name}: double-precision output scales")
    requant = _requant_s16(ctx, "NULL", "NULL", scale, params.act_min, params.act_max)
    call = _call("mcuflow_fully_connected_s16", str(x.size // depth), str(depth), str(units),
                 f"&{requant}", ctx.pointer(x.name, "S16"),
                 ctx.pool.tensor(ctx.graph, weights.name), ctx.pointer(ctx.op.outputs[0], "S16"))
    return _code(ctx, call, ("mcuflow_s16",))


def _quantize_s16(ctx: EmitContext) -> LayerCode:
    """QUANTIZE to or from int16: from float32, or a change of scale (and type)."""
    x, out = ctx.input(0), ctx.output()
    if x.dtype is DType.FLOAT32:
        call = _call("mcuflow_quantize_f32_s16", c_float(ctx.quant(out.name).scale0),
                     ctx.pointer(x.name, "U8"), ctx.pointer(out.name, "S16"), str(out.size))
        return _code(ctx, call, ("mcuflow_s16",))
    params = prepare_requantize(x, out)
    symbol = _define(ctx, "mcuflow_requantize_s16_t", "requantize", {
        "input_bits": 8 * x.dtype.itemsize, "input_zero_point": params.input_zero_point,
        "multiplier": params.multiplier, "shift": params.shift,
        "output_bits": 8 * out.dtype.itemsize, "output_zero_point": params.output_zero_point})
    call = _call("mcuflow_requantize_s16", f"&{symbol}", ctx.pointer(x.name, "U8"),
                 ctx.pointer(out.name, "U8"), str(out.size))
    return _code(ctx, call, ("mcuflow_s16",))


def _binary_s16(ctx: EmitContext, layout: str) -> LayerCode:
    """A 16x8 ADD or MUL: mcuflow_binary_s16 over the broadcast `layout`."""
    tensors = (ctx.input(0), ctx.input(1), ctx.output())
    fields: dict[str, int | str]
    if ctx.op.kind is OpKind.MUL:
        m = prepare_mul_s16(*tensors, ctx.op.attrs)
        fields = {"op": "MCUFLOW_S16_MUL", "left_shift": 0, "input1_multiplier": 0,
                  "input1_shift": 0, "input2_multiplier": 0, "input2_shift": 0,
                  "output_multiplier": m.output_multiplier, "output_shift": m.output_shift,
                  "act_min": m.act_min, "act_max": m.act_max}
    else:
        a = prepare_add_s16(*tensors, ctx.op.attrs)
        fields = {"op": "MCUFLOW_S16_ADD", "left_shift": a.left_shift,
                  "input1_multiplier": a.input1_multiplier, "input1_shift": a.input1_shift,
                  "input2_multiplier": a.input2_multiplier, "input2_shift": a.input2_shift,
                  "output_multiplier": a.output_multiplier, "output_shift": a.output_shift,
                  "act_min": a.act_min, "act_max": a.act_max}
    params = _define(ctx, "mcuflow_binary_s16_t", "params", fields)
    call = _call("mcuflow_binary_s16", f"&{params}", f"&{layout}",
                 *(ctx.pointer(name, "S16") for name in (*ctx.op.inputs, *ctx.op.outputs)))
    return _code(ctx, call, ("mcuflow_s16",))


def _pool_s16(ctx: EmitContext, args: tuple[str, ...]) -> LayerCode:
    """An int16 AVERAGE_POOL_2D or MAX_POOL_2D (`args`: window and clamp)."""
    pointers = (ctx.pointer(ctx.op.inputs[0], "S16"), ctx.pointer(ctx.op.outputs[0], "S16"))
    if ctx.op.kind is OpKind.MAX_POOL_2D:
        return _code(ctx, _call("mcuflow_max_pool_s16", *args, *pointers), ("mcuflow_s16",))
    call = (f"if (mcuflow_avg_pool_s16({', '.join((*args, *pointers))}) != 0) {{\n"
            "    return MCUFLOW_ERROR_KERNEL;\n}")
    return _code(ctx, call, ("mcuflow_s16",))


def _softmax_s16(ctx: EmitContext) -> LayerCode:
    """An int16 SOFTMAX: mcuflow_softmax_s16 with LiteRT's exp and 1/(1+x) tables."""
    x = ctx.input(0)
    params = prepare_softmax_s16(x, ctx.op.attrs)
    exp_table = ctx.constant("exp", "int16_t", params.exp_table,
                             f"{ctx.op.name}: exp over [-10, 0], 513 entries")
    reciprocal = ctx.constant("reciprocal", "int16_t", params.reciprocal_table,
                              f"{ctx.op.name}: 1 / (1 + x) over [0, 1], 513 entries")
    depth = x.shape[-1]
    call = _call("mcuflow_softmax_s16", str(x.size // depth), str(depth),
                 c_int(params.input_multiplier), c_int(params.input_left_shift), exp_table,
                 reciprocal, ctx.pointer(x.name, "S16"), ctx.pointer(ctx.op.outputs[0], "S16"))
    return _code(ctx, call, ("mcuflow_s16",))


def _sigmoid_s16(ctx: EmitContext) -> LayerCode:
    """An int16 LOGISTIC or TANH: mcuflow_sigmoid_s16 over LiteRT's sigmoid table."""
    x = ctx.input(0)
    params = prepare_sigmoid_s16(x, ctx.op.kind)
    table = ctx.constant("sigmoid", "uint16_t", SIGMOID_TABLE_S16.astype(np.uint16),
                         "sigmoid(i / 24) in 0.16 fixed point (LiteRT's sigmoid_table_uint16)")
    call = _call("mcuflow_sigmoid_s16", str(int(ctx.op.kind is OpKind.TANH)),
                 c_int(params.multiplier), c_int(params.left_shift), table,
                 ctx.pointer(x.name, "S16"), ctx.pointer(ctx.op.outputs[0], "S16"), str(x.size))
    return _code(ctx, call, ("mcuflow_s16",))
