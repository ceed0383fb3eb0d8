"""Measure the flash bytes of every kernel, struct and runtime per Cortex-M target (hw data).

For each target of mcuflow.codegen.targets.CORTEX_M, mcuflow.toolchain.code_size links probe
firmware with the real flags and linker script: a model that runs no kernel (the runtime), the
same with one kernel kept (its code and the support routines it shares), a model with three
inputs and outputs (bytes per tensor), a probe of sizeof every parameter struct, and six models
whose run functions fit bytes per kernel call and per argument. Prints the table; --write
replaces src/mcuflow/hw/kernel_code.toml, which analyze reads to estimate flash without a
toolchain (tests/targets/test_flash_estimate.py re-measures and compares in CI).

--compare instead links the shared MLPerf Tiny models and zoo models (MobileNetV2/V3,
SqueezeNet, an FC autoencoder, a tiny classifier, KWS under codebook quantisation) for each
target and prints the estimate (mcuflow.codegen.flash) beside the ELF's text+rodata+data; the
goal (issue 11) is within 3 % everywhere.
Run: .venv/bin/python bench/kernel_code.py [--write | --compare] [--target cortex-m4 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mcuflow import api  # noqa: E402
from mcuflow.codegen.flash import estimate_flash  # noqa: E402
from mcuflow.codegen.project import generate_project  # noqa: E402
from mcuflow.codegen.render import emit_layers  # noqa: E402
from mcuflow.codegen.targets import CORTEX_M  # noqa: E402
from mcuflow.frontends.tflite_reader import read_tflite  # noqa: E402
from mcuflow.hw.board import get_board  # noqa: E402
from mcuflow.hw.kernel_code import DATA_FILE, dump_table  # noqa: E402
from mcuflow.ir import zoo  # noqa: E402
from mcuflow.ir.graph import Graph  # noqa: E402
from mcuflow.memory.planner import plan_memory  # noqa: E402
from mcuflow.toolchain.arm import build_cortexm, elf_sizes  # noqa: E402
from mcuflow.toolchain.code_size import (  # noqa: E402
    PROBE_BOARD,
    compiler_version,
    measure_target,
)

ROOT = Path(__file__).resolve().parents[1]
DATA_PATH = ROOT / "src" / "mcuflow" / "hw" / DATA_FILE
SHARED_MODELS = ROOT.parent / "shared" / "models" / "mlperf_tiny"
SHARED = ("kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite", "str_ww_ref_model.tflite")
PLAN_SECONDS = 0.3
COMMENT = """\
Flash bytes of the generated C once linked, per Cortex-M target: written by
`python bench/kernel_code.py --write` (mcuflow.toolchain.code_size), read by
mcuflow.codegen.flash to estimate a model's flash without a toolchain.
runtime: firmware of a one-input, one-output model whose steps run no kernel, per application;
per_tensor: bytes per further model input or output; slack: added to every estimate (the
largest undercount over the fit models + 32 B of alignment); run: the model's run function,
fitted (base + call * kernel calls + argument * their arguments); structs: sizeof each parameter
struct; kernels: bytes only that kernel adds (code) and the shared sections it pulls in
(support, counted once per firmware)."""


def codebook_kws() -> Graph:
    """The KWS float model quantised with the codebook scheme."""
    model = SHARED_MODELS / "kws_ref_model_float32.tflite"
    shape = api.load_float_model(model).model_shape("input_1")
    calibration = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    return api.quantize_model(model, calibration, "codebook").graph


def models() -> dict[str, Callable[[], Graph]]:
    """Every model --compare links, by name."""
    shared = {name.split(".")[0]: (lambda n=name: read_tflite(SHARED_MODELS / n))
              for name in SHARED}
    return {**shared, "mobilenet_v2": zoo.mobilenet_v2_like,
            "mobilenet_v3": zoo.mobilenet_v3_like, "squeezenet": zoo.squeezenet_like,
            "fc_autoencoder": zoo.fc_autoencoder, "tiny_classifier": zoo.tiny_classifier,
            "codebook_kws": codebook_kws}


def compare_row(name: str, graph: Graph, target: str, work: Path) -> str:
    """One line: the estimate and its parts, the linked ELF's flash, the error."""
    dsp = CORTEX_M[target].dsp
    plan = plan_memory(graph, PLAN_SECONDS, dsp=dsp)
    estimate = estimate_flash(graph, *emit_layers(graph, plan, dsp), target)
    project = generate_project(graph, plan, work / f"{name}-{target}", target=target,
                               board=get_board(PROBE_BOARD))
    elf = elf_sizes(build_cortexm(project.path, target)).flash_bytes
    return (f"{name:24}{target:14}{estimate.total:>10,}{elf:>10,}"
            f"{(estimate.total / elf - 1) * 100:>+8.2f}{estimate.constants:>11,}"
            f"{estimate.code:>9,}{estimate.runtime:>9,}")


def compare(targets: list[str]) -> None:
    """Print estimate vs ELF flash for every model on every target."""
    print(f"{'model':24}{'target':14}{'estimate':>10}{'ELF':>10}{'err %':>8}{'constants':>11}"
          f"{'code':>9}{'runtime':>9}")
    with tempfile.TemporaryDirectory() as work:
        for name, build in models().items():
            graph = build()
            for target in targets:
                print(compare_row(name, graph, target, Path(work)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace {DATA_PATH.name}")
    parser.add_argument("--compare", action="store_true",
                        help="print estimate vs linked ELF flash per model and target")
    parser.add_argument("--target", action="append", choices=list(CORTEX_M),
                        help="only these targets (not with --write)")
    args = parser.parse_args()
    if args.write and (args.target or args.compare):
        parser.error("--write measures every target")
    targets = args.target or list(CORTEX_M)
    if args.compare:
        compare(targets)
        return
    with tempfile.TemporaryDirectory() as work:
        tables = {t: measure_target(t, Path(work) / t) for t in targets}
    text = dump_table(compiler_version(), tables, COMMENT)
    if args.write:
        DATA_PATH.write_text(text)
        print(f"wrote {DATA_PATH}")
    else:
        print(text)


if __name__ == "__main__":
    main()
