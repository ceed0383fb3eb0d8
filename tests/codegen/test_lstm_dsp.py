"""The DSP integer LSTM (mcuflow_lstm_dsp_s8): its arithmetic proven, its layers bit-exact.

The kernel's sigmoid and tanh (exp table, barrel shifter and Newton-Raphson as plain
multiply-adds) equal mcuflow.quant.fixedpoint's gemmlowp functions on every int16 input for
every integer bits the kernel serves; its SMMLAR requantisation equals TFLite's
MultiplyByQuantizedMultiplier on accumulators across the whole range the emitter accepts;
layers that reach each branch (cell scales, left and right shifts, batch and time-major
layouts, odd sizes) run bit-exact with LiteRT through the DSP kernel on the host and on QEMU
Cortex-M4 / M7, and the declines fall back to the portable kernel with their reason.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mcuflow.codegen
from mcuflow.codegen.lstm_dsp import (
    CELL_BITS,
    cell_barrel,
    cell_exp_bits,
    exp_table,
    reciprocal_table,
    rq_fits,
    rq_words,
)
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import LstmAttrs
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    logistic_int16,
    multiply_by_quantized_multiplier_array,
    tanh_int16,
)
from mcuflow.toolchain.host import build_host, find_compiler, random_inputs, run_host
from mcuflow.toolchain.qemu import default_board, verify_cortexm
from tests.cc_cache import cached_compiler
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke

KERNELS = Path(mcuflow.codegen.__file__).parent / "kernels"
RUNS = 4
PLAN_SECONDS = 0.2
CALL = "mcuflow_lstm_dsp_s8("
HARNESS = """#include <stdio.h>
#include "mcuflow_conv_dsp.c"
#include "tables.h"
static int32_t rq(int32_t acc, const int32_t *w) { return mcuflow_lstm_rq(acc, w[0], w[1], w[2],
                                                                          w[3], w[4]); }
int main(void)
{
    for (int32_t a = INT16_MIN; a <= INT16_MAX; ++a) {
        printf("%d %d", (int)mcuflow_lstm_sigmoid(a, sigmoid_exp, reciprocal),
               (int)mcuflow_lstm_tanh(a, tanh_exp, reciprocal));
        for (int32_t bits = 0; bits <= 6; ++bits) {
            const mcuflow_dsp_lstm_cell_t *c = &cells[bits];
            printf(" %d", (int)mcuflow_lstm_cell_tanh(a, c->table, (1 << c->table_bits) - 1, c,
                                                      reciprocal));
        }
        printf("\\n");
    }
    for (int32_t i = 0; i < RQ_COUNT; ++i) {
        printf("%d\\n", (int)rq(accumulators[i], words[i]));
    }
    return 0;
}
"""


def _c_array(ctype: str, name: str, values: np.ndarray) -> str:
    body = ", ".join(str(int(v)) for v in values.reshape(-1))
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def _cell(bits: int) -> str:
    steps, mask, zero = cell_barrel(bits)
    return (f"{{cell_exp{bits}, {cell_exp_bits(bits)}, {{{', '.join(map(str, steps))}}}, "
            f"{mask}, {zero}}}")


def _requant_cases(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accumulators, their rq words and TFLite's result, over right and left shifts.

    For each multiplier the accumulators span the widest range rq_fits accepts: its ends,
    values around 0 and random ones.
    """
    accumulators, words, expected = [], [], []
    for shift in (-31, -20, -12, -3, -2, -1, 0, 1, 4):
        for multiplier in (1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))):
            q = QuantizedMultiplier(multiplier, shift)
            bound = ((1 << 31) - 1) >> rq_words(q)[0]
            acc = np.concatenate([[-bound - 1, bound, 0, 1, -1],
                                  np.arange(-300, 300), rng.integers(-bound - 1, bound, 500)])
            assert rq_fits(q, int(acc.min()), int(acc.max()))
            accumulators.append(acc)
            words.append(np.tile(rq_words(q), (len(acc), 1)))
            expected.append(multiply_by_quantized_multiplier_array(acc, multiplier, shift))
    return np.concatenate(accumulators), np.concatenate(words), np.concatenate(expected)


def test_activations_and_requantisation_are_exact(tmp_path: Path) -> None:
    accumulators, words, expected = _requant_cases(np.random.default_rng(3))
    tables = [exp_table(bits + 1, cell_exp_bits(bits)) for bits in CELL_BITS]
    (tmp_path / "tables.h").write_text(
        f"#define RQ_COUNT {len(accumulators)}\n"
        + _c_array("int16_t", "sigmoid_exp", exp_table(3))
        + _c_array("int16_t", "tanh_exp", exp_table(4))
        + _c_array("int8_t", "reciprocal", reciprocal_table())
        + "".join(_c_array("int16_t", f"cell_exp{b}", t) for b, t in zip(CELL_BITS, tables,
                                                                          strict=True))
        + "static const mcuflow_dsp_lstm_cell_t cells[] = {"
        + ", ".join(_cell(b) for b in CELL_BITS) + "};\n"
        + _c_array("int32_t", "accumulators", accumulators)
        + _c_array("int32_t", "flat_words", words).replace("[]", f"[{words.size}]")
        + "static const int32_t (*words)[5] = (const int32_t (*)[5])flat_words;\n")
    (tmp_path / "harness.c").write_text(HARNESS)
    binary = tmp_path / "harness"
    subprocess.run([find_compiler("gcc"), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-Wno-unused-function", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=undefined", f"-I{KERNELS}", f"-I{tmp_path}",
                    str(tmp_path / "harness.c"), "-o", str(binary)], check=True)
    lines = subprocess.run([str(binary)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    table = np.array([line.split() for line in lines[:1 << 16]], dtype=np.int64)
    inputs = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    np.testing.assert_array_equal(table[:, 0], logistic_int16(inputs, 3))
    np.testing.assert_array_equal(table[:, 1], tanh_int16(inputs, 3))
    for cell_bits in CELL_BITS:
        np.testing.assert_array_equal(table[:, 2 + cell_bits], tanh_int16(inputs, cell_bits))
    np.testing.assert_array_equal(np.array(lines[1 << 16:], dtype=np.int64), expected)


def test_exp_tables_are_gemmlowps_exp() -> None:
    """Entry i is exp(-(i + 1) 2^(bits - 15)), decreasing down to exp(-1/2) in Q3.12.

    exp(-1/2) is the barrel shifter's constant for that step (gemmlowp's 19875).
    """
    table = exp_table(3)
    assert len(table) == 2048 and table[0] == 32760 and table[-1] == 19875
    assert (np.diff(table) <= 0).all()
    assert len(exp_table(1, cell_exp_bits(0))) == 4096


# --- layers ------------------------------------------------------------------------------------


def lstm_dsp_shapes() -> Graph:
    """Odd feature and unit counts, batch 3, time-major layouts and the cell scale's ends.

    Tails of the 4-column groups, cell scales 2^-15 and 2^-9, a cell clip, a single time step.
    """
    b = GraphBuilder("lstm_dsp_shapes", seed=31)
    x = b.input((3, 5, 7), 0.05, -2)
    odd = b.lstm(x, 5)
    major = b.lstm(b.reshape(x, (5, 3, 7)), 6, LstmAttrs(True, 0.5), gain=5.0,
                   cell_exponent=-15)
    fine = b.lstm(b.reshape(x, (15, 1, 7)), 9, LstmAttrs(True), cell_exponent=-9)
    single = b.lstm(b.reshape(x, (1, 15, 7)), 13)
    b.output(odd, major, fine, single)
    return b.build()


def lstm_dsp_scales() -> Graph:
    """Left-shifted input products, a deep recurrence, input rows extracted part-way.

    A coarse input scale gives the input products a left shift; rows of 1200 features make the
    packed product extract B every 512 columns.
    """
    b = GraphBuilder("lstm_dsp_scales", seed=32)
    x = b.input((1, 4, 16), 2.0, 0)
    long = b.lstm(b.input((1, 3, 1200), 0.05, 1), 4)
    b.output(b.lstm(x, 20, gain=4.0), b.lstm(b.input((1, 6, 3), 0.05, 7), 36), long)
    return b.build()


FAMILIES = {f.__name__: f for f in (lstm_dsp_shapes, lstm_dsp_scales)}


@functools.cache
def planned(name: str) -> tuple[Graph, Plan]:
    graph = FAMILIES[name]()
    return graph, plan_memory(graph, PLAN_SECONDS, dsp=True)


def _run(graph: Graph, plan: Plan, directory: Path, compiler: str
         ) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    project = generate_project(graph, plan, directory, dsp=True)
    binary = build_host(project.path, sanitize=True, compiler=cached_compiler(compiler),
                        opt_level="-O1")
    inputs = random_inputs(graph, RUNS, 7)
    return inputs, run_host(binary, inputs, project.outputs), (
        project.path / "mcuflow_model.c").read_text()


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_lstm_layers_are_bit_exact_through_the_dsp_kernel(name: str, compiler: str,
                                                         tmp_path: Path) -> None:
    graph, plan = planned(name)
    inputs, actual, source = _run(graph, plan, tmp_path / "p", compiler)
    lstms = sum(op.kind.value == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in graph.operators)
    assert source.count(CALL) == lstms
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(write_tflite(graph))
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


def test_left_shifts_and_chunks_keep_the_dsp_kernel() -> None:
    graph, plan = planned("lstm_dsp_scales")
    layers = emit_layers(graph, plan, dsp=True)[0]
    lstms = [layer for layer in layers if any("lstm" in s for s in layer.statements)]
    assert len(lstms) == 3 and all(layer.portable_reason is None for layer in lstms)
    structs = "".join(str(d) for layer in lstms for d in layer.definitions)
    assert "1200, 300, 128, 0}" in structs  # input matrix: 300 groups, B every 128
    assert ".right_shifts = 0" in structs


def _declined(graph: Graph, plan: Plan) -> list[str | None]:
    layers = emit_layers(graph, plan, dsp=True)[0]
    return [layer.portable_reason for layer in layers
            if any("lstm" in s for s in layer.statements)]


def test_unpackable_weights_fall_back_to_the_portable_kernel(tmp_path: Path) -> None:
    b = GraphBuilder("lstm_unpackable", seed=33)
    b.output(b.lstm(b.input((1, 3, 4), 0.05, 1), 4))
    graph = b.build()
    weights = graph.tensors[graph.operators[0].inputs[1]].data
    weights[0, 0], weights[1, 0] = -3, -128
    plan = plan_memory(graph, PLAN_SECONDS, dsp=True)
    reasons = _declined(graph, plan)
    assert len(reasons) == 1 and reasons[0] is not None and "-128" in reasons[0]
    inputs, actual, source = _run(graph, plan, tmp_path / "p", "gcc")
    assert CALL not in source and "mcuflow_lstm_s8(" in source
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")


def test_plans_without_dsp_scratch_fall_back_with_a_reason() -> None:
    b = GraphBuilder("lstm_host_plan", seed=34)
    b.output(b.lstm(b.input((1, 3, 4), 0.05, 1), 4))
    graph = b.build()
    reasons = _declined(graph, plan_memory(graph, PLAN_SECONDS))
    assert reasons[0] is not None and "scratch" in reasons[0]


def test_wide_accumulators_fall_back_with_a_reason() -> None:
    """A left shift so large that the shifted accumulators leave int32."""
    b = GraphBuilder("lstm_wide", seed=35)
    b.output(b.lstm(b.input((1, 3, 64), 20000.0, 0), 4))
    graph = b.build()
    reasons = _declined(graph, plan_memory(graph, PLAN_SECONDS, dsp=True))
    assert reasons[0] is not None and "leave int32" in reasons[0]


# --- Cortex-M ----------------------------------------------------------------------------------

CROSS = shutil.which("arm-none-eabi-gcc")
QEMU = shutil.which("qemu-system-arm")


@pytest.mark.skipif(CROSS is None or QEMU is None, reason="the Arm toolchain or QEMU is missing")
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_lstm_layers_are_bit_exact_on_qemu(name: str, target: str) -> None:
    graph, plan = planned(name)
    layers = emit_layers(graph, plan, dsp=True)[0]
    calls = [s for layer in layers for s in layer.statements if "lstm" in s]
    assert calls and all(s.startswith(CALL) for s in calls)
    result = verify_cortexm(graph, plan, target, default_board(target), runs=3, seed=2)
    assert result.bit_exact, f"{result.mismatches} of {result.runs} runs differ"
