"""C of codebook-stored weights: the stream and tables in flash, a decode call before the layer.

The study's step 2 ("revert Huffman encoding and K-means clustering"): each weight tensor with a
`Tensor.codebook` is decoded by kernels/mcuflow_codebook.c into the end of the step's scratch
(sized by memory.scratch.decoded_bytes), and the layer's ordinary portable kernel reads it there.
The Arm DSP kernels pack their weights into layouts of their own, so a layer with codebook
weights always runs the portable kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mcuflow.codegen.context import CodegenError, ConstantPool, EmitContext, LayerCode, c_struct
from mcuflow.ir.codebook import Codebook
from mcuflow.ir.graph import Graph
from mcuflow.memory.scratch import decoded_bytes, scratch_bytes
from mcuflow.quant.codebook import decoder_tables

KERNEL = "mcuflow_codebook"


@dataclass
class DecodedPool(ConstantPool):
    """The model's constant pool in which decoded tensors resolve to their arena pointer."""

    decoded: dict[str, str] = field(default_factory=dict)

    def tensor(self, graph: Graph, name: str) -> str:
        """The decoded copy's pointer, or the constant array's symbol."""
        return self.decoded[name] if name in self.decoded else super().tensor(graph, name)


def emit_with_codebooks(ctx: EmitContext, emit: Callable[[EmitContext], LayerCode]
                        ) -> LayerCode:
    """The C of a step; codebook inputs are decoded into its scratch before `emit`'s code."""
    names = [n for n in dict.fromkeys(ctx.op.inputs) if ctx.tensor(n).codebook is not None]
    if not names:
        return emit(ctx)
    needed = scratch_bytes(ctx.graph, ctx.op, ctx.inplace)
    if ctx.step.scratch is None or ctx.plan.buffers[ctx.step.scratch].size < needed:
        raise CodegenError(f"step {ctx.layer} needs {needed} bytes of scratch for its kernel "
                           "and decoded weights (plan the graph that is compiled)")
    scratch = ctx.plan.buffers[ctx.step.scratch]
    offset = scratch.end - decoded_bytes(ctx.graph, ctx.op)
    definitions, statements, pointers = [], [], {}
    for index, name in enumerate(names):
        pointers[name] = f"MCUFLOW_S8({offset})"
        symbol = _decoder(ctx, index, name, definitions)
        statements.append(f"mcuflow_codebook_decode_s8(&{symbol}, {pointers[name]});")
        offset += ctx.tensor(name).nbytes
    plain = _without_codebooks(ctx.graph, names)
    pool = DecodedPool(arrays=ctx.pool.arrays, _of_tensor=ctx.pool._of_tensor,
                       _of_values=ctx.pool._of_values, structs=ctx.pool.structs,
                       naming=ctx.pool.naming, decoded=pointers)
    code = emit(replace(ctx, graph=plain, pool=pool, definitions=[], dsp=False))
    return LayerCode(statements + code.statements, definitions + code.definitions,
                     code.kernels | {KERNEL})


def _decoder(ctx: EmitContext, index: int, name: str, definitions: list[str]) -> str:
    """Register the flash arrays of codebook input `name`, define its struct; its symbol."""
    tensor = ctx.tensor(name)
    codebook: Codebook = tensor.codebook
    tables = decoder_tables(codebook)
    stem = f"codebook{index}"
    what = f"{ctx.op.name}: {name}"
    stream = ctx.constant(f"{stem}_stream", "uint8_t", codebook.stream,
                          f"{what}: {codebook.bit_length} bits of canonical Huffman codes")
    lookup = ctx.constant(f"{stem}_lookup", "int16_t", tables.lookup,
                          f"{what}: (code length << 8) | (value + 128) per "
                          f"{codebook.lookup_bits}-bit prefix")
    long_codes = (ctx.constant(f"{stem}_long", "int32_t", tables.long_codes,
                               f"{what}: (limit, base) per code length above the lookup")
                  if tables.long_codes.size else "NULL")
    values = (ctx.constant(f"{stem}_values", "int8_t", codebook.values,
                           f"{what}: {len(codebook.values)} centroids in code order")
              if tables.values_needed else "NULL")
    symbol = ctx.symbol(stem)
    definitions.append(c_struct("mcuflow_codebook_t", symbol, {
        "stream": stream, "stream_bytes": codebook.stream.size, "size": tensor.size,
        "lookup_bits": codebook.lookup_bits, "lookup": lookup, "max_bits": codebook.max_bits,
        "long_codes": long_codes, "values": values}))
    return symbol


def _without_codebooks(graph: Graph, names: list[str]) -> Graph:
    """A view of `graph` in which tensors `names` are plain (the kernels' scratch rules)."""
    tensors = dict(graph.tensors)
    for name in names:
        tensors[name] = replace(tensors[name], codebook=None)
    return Graph(graph.name, tensors, graph.operators, graph.inputs, graph.outputs)
