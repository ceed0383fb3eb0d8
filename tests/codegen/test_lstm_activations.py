"""The C kernel's int16 gemmlowp sigmoid and tanh equal mcuflow.quant.fixedpoint's on every input.

Random LSTM data rarely reaches the saturating corners (-32768, the clamp below -32 of the
exponential, the last barrel-shifter bits), so every int16 input is tried for every integer
bits the integer LSTM uses (sigmoid Q3.12, tanh Q0 to Q6), built with the sanitizers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

import mcuflow.codegen
from mcuflow.quant.fixedpoint import logistic_int16, tanh_int16
from mcuflow.toolchain.host import find_compiler

KERNELS = Path(mcuflow.codegen.__file__).parent / "kernels"
HARNESS = """#include <stdio.h>
#include "mcuflow_lstm.c"
int main(void)
{
    for (int32_t a = INT16_MIN; a <= INT16_MAX; ++a) {
        printf("%d", (int)mcuflow_logistic16(a, 3));
        for (int32_t bits = 0; bits <= 6; ++bits) {
            printf(" %d", (int)mcuflow_tanh16(a, bits));
        }
        printf("\\n");
    }
    return 0;
}
"""


def test_c_activations_equal_the_reference_on_every_int16(tmp_path: Path) -> None:
    source = tmp_path / "harness.c"
    source.write_text(HARNESS)
    binary = tmp_path / "harness"
    subprocess.run([find_compiler("gcc"), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-Wno-unused-function", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=undefined", f"-I{KERNELS}", str(source), "-o",
                    str(binary)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    table = np.array([line.split() for line in out.splitlines()], dtype=np.int64)
    inputs = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    np.testing.assert_array_equal(table[:, 0], logistic_int16(inputs, 3))
    for bits in range(7):
        np.testing.assert_array_equal(table[:, 1 + bits], tanh_int16(inputs, bits))
