"""The Python API: wires frontends, passes, memory, analysis, codegen and toolchains together."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcuflow.advisor import Advice, FitMode, FitOption, FitRequest, Fitted, fit_analysis
from mcuflow.agreement import OnnxRuntimeAgreement, onnxruntime_agreement, random_model_inputs
from mcuflow.analysis.energy import (
    BATTERIES,
    Battery,
    EnergyReport,
    energy_report,
    life_figure,
    weights_in_sram,
)
from mcuflow.analysis.html_report import (
    Figures,
    Page,
    figure_svg,
    layer_quant,
    literal_text,
    render_page,
    svg_markup,
)
from mcuflow.analysis.plots import working_set_figure
from mcuflow.codegen import GeneratedProject, generate_project
from mcuflow.codegen.firmware import BOARD_MACHINES, QEMU_SEMIHOSTING, Firmware, Io, MemoryMap
from mcuflow.codegen.library import generate_library
from mcuflow.codegen.names import Naming
from mcuflow.codegen.project import SOURCE_MODEL
from mcuflow.codegen.targets import LINKER_SCRIPT, board_target
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.frontends.torch_reader import is_torch_model, torch_to_onnx
from mcuflow.hw.board import get_board
from mcuflow.ir.graph import Graph
from mcuflow.measure import PatchOverhead, measure_overhead, predicted_overhead
from mcuflow.memory.patch_search import PatchOption, PatchRequest, PatchSearch
from mcuflow.memory.plan import Buffer, Plan
from mcuflow.memory.plot import plot_arena
from mcuflow.outputs import write_directory, write_file
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.planning import Analysis, Build, analyze_graph, planned_steps
from mcuflow.ptq import (
    DEFAULT_CODEBOOK_SIZE,
    QUANT_SCHEMES,
    Calibration,
    FloatModel,
    ModelSource,
    QuantizeResult,
    calibration_samples,
    load_calibration,
    load_float_model,
    quantize_model,
    quantize_own,
)
from mcuflow.quant.affine import quantize_values
from mcuflow.quant.calibrate import CalibrationError
from mcuflow.quant.qdq import model_quantized
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter, RunResult, run
from mcuflow.toolchain.host import VerifyResult, check_runs, verify_directory, verify_host
from mcuflow.toolchain.qemu import CortexMResult, default_board, verify_cortexm
from mcuflow.toolchain.uart import board_machine, machine_board, verify_board
from mcuflow.validation import Dataset, Progress, Reference, Validation, scores, validate

__all__ = [
    "Accuracy",
    "Advice",
    "Build",
    "FitOption",
    "FitRequest",
    "Fitted",
    "PatchOverhead",
    "Verification",
    "advice_json",
    "build_for",
    "does_not_fit",
    "fit_for_compile",
    "fit_json",
    "fit_line",
    "fit_model",
    "accuracy",
    "verify_compiled",
    "bench_models",
    "verify_board_model",
    "verify_cortexm_model",
    "DEFAULT_CODEBOOK_SIZE",
    "Analysis",
    "Calibration",
    "DEFAULT_BOARD",
    "Firmware",
    "FloatModel",
    "firmware_options",
    "Io",
    "MemoryMap",
    "QUANT_SCHEMES",
    "QuantizeOptions",
    "QuantizeResult",
    "analyze_model",
    "calibration_samples",
    "compile_analysis",
    "compile_model",
    "demo_model_path",
    "dump_tensors",
    "load_calibration",
    "load_float_model",
    "evaluation_data",
    "load_graph",
    "model_path",
    "plan_hash",
    "plan_to_json",
    "planned_steps",
    "quantize_model",
    "DEFAULT_REPORT_RATE_HZ",
    "report_model",
    "report_page",
    "write_report",
    "run_model",
    "verify_analysis",
    "validate_model",
    "verify_model",
    "write_array",
    "write_model",
]

DEFAULT_BOARD = "nucleo-f767zi"


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantise a float model on the fly (`--calibration`, `--scheme`)."""

    calibration: Path
    scheme: str = "affine"
    per_channel: bool = True
    method: str = "minmax"
    codebook_size: int = DEFAULT_CODEBOOK_SIZE
    bias_correction: bool = True
    io_dtype: str = "int8"


def load_graph(model: ModelSource, quantize: QuantizeOptions | None = None,
               example_inputs: tuple[Any, ...] | None = None) -> Graph:
    """Read an int8 model, or quantise a float one as `quantize` says; check support.

    `model`: a .tflite, .onnx or .pt2 path, or a PyTorch ExportedProgram or nn.Module (with
    `example_inputs`). An ONNX or PyTorch model that brings its own quantisation (QDQ, PT2E)
    keeps it. An int8 TFLite model runs passes.pipeline.INT8_PASSES (the same values).
    """
    if quantize is not None or _quantized_here(model):
        return load_quantized(model, quantize, example_inputs).graph
    return run_passes(load_int8_model(model_path(model)), INT8_PASSES)


def _quantized_here(model: ModelSource) -> bool:
    """True for the models mcuflow quantises itself: ONNX and PyTorch."""
    return is_torch_model(model) or model_path(model).suffix.lower() == ".onnx"


def load_quantized(model: ModelSource, quantize: QuantizeOptions | None = None,
                   example_inputs: tuple[Any, ...] | None = None) -> QuantizeResult:
    """A float or QDQ model quantised (QDQ: with its own parameters), with its I/O layout."""
    source = model if is_torch_model(model) else model_path(model)
    if quantize is not None:
        return quantize_model(source, quantize.calibration, quantize.scheme,
                              quantize.per_channel, quantize.method,
                              codebook_size=quantize.codebook_size,
                              bias_correction=quantize.bias_correction,
                              example_inputs=example_inputs, io_dtype=quantize.io_dtype)
    float_model = load_float_model(source, example_inputs)
    if not model_quantized(float_model.graph):
        kind = "ONNX model" if Path(str(source)).suffix.lower() == ".onnx" else "model"
        raise McuflowError(f"'{source}' is a float {kind} with no quantisation of its own",
                           "pass --calibration DATA to quantise it on the fly, or run "
                           "`mcuflow quantize` first")
    return quantize_own(float_model)


def model_path(model: Path | str) -> Path:
    """`model` as a path, checked to name a file (not a directory, not nothing)."""
    path = Path(model)
    if path.is_dir():
        raise McuflowError(f"'{path}' is a directory, not a model file",
                           f"pass the .tflite or .onnx file; a directory written by `mcuflow "
                           f"compile` keeps its model as {SOURCE_MODEL}")
    if not path.is_file():
        raise McuflowError(f"no such model file: {path}", hint="check the path")
    return path


def build_for(board_id: str, board_file: Path | None = None, target: str | None = None,
              application: Io | None = None) -> Build:
    """What `analyze` plans for: the board, the target and the application.

    `target` None is the board's core; `application` None is the one `compile` builds for the
    board (see firmware_options), whose flash the estimate counts.
    """
    board = get_board(board_id, board_file)
    return Build(board, target, firmware_options(board_id, board_file, application).io)


def analyze_model(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    quantize: QuantizeOptions | None = None, target: str | None = None,
    application: Io | None = None, patches: PatchRequest | None = None,
) -> Analysis:
    """Plan memory for `model` and report per-layer costs on the board.

    `patches` (default: automatic) says whether the first layers may run patch by patch: by
    default only when the model does not fit the board's SRAM otherwise (see search_patches).

    The scratch buffers are sized for the kernels of `target` (default: the board's core, with
    the Arm DSP kernels where it has the extension). On a Cortex-M target the flash is the
    linked firmware's, estimated for `application` (default: the one `compile` builds for the
    board, see firmware_options); on others, the constants only.
    """
    return fit_model(model, board_id, board_file, quantize, target, application,
                     patches).analysis


def fit_model(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    quantize: QuantizeOptions | None = None, target: str | None = None,
    application: Io | None = None, patches: PatchRequest | None = None,
    fit: FitRequest | None = None, *, advise: bool = False,
) -> Fitted:
    """analyze_model, then --fit: the model as asked, or changed as the fit advisor says.

    With `advise`, a model that does not fit gets the advisor's ranked options (see
    advisor.fit_analysis); --fit auto weighs them whenever the model does not fit.
    """
    graph = load_graph(model, quantize)
    build = build_for(board_id, board_file, target, application)
    request = patches or PatchRequest()
    asked = analyze_graph(graph, build, request)
    return fit_analysis(asked, build, request, fit or FitRequest(), advise=advise)


def fit_line(fitted: Fitted) -> str | None:
    """One line on what --fit applied (saying so when it changed the model), else None."""
    option = fitted.applied
    if option is None:
        return None
    name = fitted.asked.graph.name
    if option.exact:
        reader = f"; {option.detail}" if option.needs_reader else ""
        return (f"fit: applied {option.name} to '{name}', exact: {option.description}: peak "
                f"{option.peak_bytes:,} B, flash {option.flash_bytes:,} B, "
                f"{100 * option.overhead:+.1f} % instructions (predicted){reader}")
    return (f"fit: the model '{name}' was changed ({option.name}, lossy): "
            f"{option.description}; {option.detail}; peak {option.peak_bytes:,} B, flash "
            f"{option.flash_bytes:,} B")


def fit_json(fitted: Fitted) -> dict[str, object]:
    """What --fit did, as JSON: the option applied (null: none) and whether the model changed."""
    applied = fitted.applied
    return {"applied": applied.to_json() if applied else None,
            "changed_model": fitted.changed_model}


def advice_json(advice: Advice | None) -> dict[str, object]:
    """The advisor's ranked options (`fit_options`) and the notes on those it left out."""
    return {"fit_options": [option.to_json() for option in advice.options] if advice else [],
            "fit_notes": list(advice.notes) if advice else []}


def patches_line(search: PatchSearch) -> str:
    """One line on the patch stage chosen, or why there is none."""
    chosen = search.chosen
    if chosen.choice is None:
        if search.options:
            return (f"patches: none chosen; unpatched peak {chosen.peak_bytes:,} B is the best "
                    f"within the overhead limit (budget {search.budget:,} B)")
        return (f"patches: none (peak {chosen.peak_bytes:,} B, budget {search.budget:,} B)")
    rows, cols, tile_rows, tile_cols = chosen.halo
    return (f"patches: {chosen.choice.describe()}: peak {chosen.peak_bytes:,} B (unpatched "
            f"{search.baseline.peak_bytes:,} B, budget {search.budget:,} B), predicted "
            f"{100 * search.overhead(chosen):+.1f} % instructions; the largest patch reads a "
            f"{rows}x{cols} window of the input for a {tile_rows}x{tile_cols} tile")


def patches_json(search: PatchSearch) -> dict[str, object]:
    """The patch search as JSON: the chosen stage (or null) and the Pareto set planned."""
    def option(item: PatchOption) -> dict[str, object]:
        choice = item.choice
        return {"stage_end": choice.end if choice else None,
                "grid": [choice.rows, choice.cols] if choice else None,
                "mode": choice.mode.value if choice else None,
                "peak_bytes": item.peak_bytes, "instructions": round(item.instructions),
                "overhead": search.overhead(item),
                "source_window": list(item.halo[:2]) if choice else None,
                "tile": list(item.halo[2:]) if choice else None}
    return {"budget_bytes": search.budget, "chosen": option(search.chosen),
            "unpatched": option(search.baseline),
            "pareto": [option(item) for item in search.pareto]}


def run_model(
    model: ModelSource, inputs: list[np.ndarray], quantize: QuantizeOptions | None = None
) -> RunResult:
    """Run the bit-exact reference interpreter, keeping every intermediate tensor.

    A model quantised here (a QDQ or a float model with `quantize`) takes and gives float32 in
    its own layout: each float input is quantised as the graph's input is, each output
    dequantised; an int8 input array is fed as it is.
    """
    if quantize is None and not _quantized_here(model):
        return run(load_graph(model), inputs, keep_intermediates=True)
    quantized = load_quantized(model, quantize)
    fed = [x if x.dtype == np.int8 else quantized.quantize_input(x, index)
           for index, x in enumerate(inputs)]
    result = run(quantized.graph, fed, keep_intermediates=True)
    return RunResult(quantized.dequantize_outputs(result.outputs), result.tensors)


def demo_model_path() -> Path:
    """The bundled example model (regenerate with `python -m mcuflow.examples`)."""
    from mcuflow.examples import DEMO_MODEL

    return DEMO_MODEL


def dump_tensors(tensors: dict[str, np.ndarray], directory: Path, force: bool = False) -> None:
    """Write each tensor as DIRECTORY/<index>_<sanitised name>.npy (the index keeps it unique).

    The directory is written as compile writes a project: all or nothing, never over files
    mcuflow did not write (see outputs.write_directory).
    """
    files = {}
    for index, (name, value) in enumerate(tensors.items()):
        safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_"
                       for ch in name)[:120]
        files[f"{index:04d}_{safe}.npy"] = _npy_bytes(value)
    write_directory(files, directory, what="tensor dump", force=force)


def _npy_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


def write_array(value: np.ndarray, path: Path) -> None:
    """Write one array as a .npy file, atomically."""
    write_file(path, _npy_bytes(value), "output")


def plan_to_json(plan: Plan, patches: PatchSearch | None = None,
                 fitted: Fitted | None = None) -> dict[str, object]:
    """The plan as JSON: order, in-place decisions, every buffer's offset, size and lifetime.

    With `patches`, the patch search too (patches_json); with `fitted` whose --fit applied an
    option, `fit` (fit_json); an out-of-core plan's `external_steps`, a spilling plan's
    `spilled` tensors with their offsets in the spill area and, with `fitted`, its `external`
    figures (external_json). `plan_hash` is plan_hash of the rest.
    """
    operators = plan.graph.operators
    data: dict[str, object] = {
        "model": plan.graph.name,
        "arena_bytes": plan.arena_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes,
        "alignment": plan.alignment,
        "steps": [
            {"step": index, "op_index": step.op_index, "op": operators[step.op_index].kind.value,
             "name": operators[step.op_index].name, "inplace": step.inplace.value,
             "scratch": step.scratch}
            for index, step in enumerate(plan.steps)
        ],
        "buffers": [_buffer_json(b) for b in sorted(plan.buffers.values(),
                                                     key=lambda b: (b.offset, b.name))],
    }
    if patches is not None:
        data["patches"] = patches_json(patches)
    if fitted is not None and fitted.applied is not None:
        data["fit"] = fit_json(fitted)
    if plan.external is not None:
        data["external_steps"] = sorted(plan.external.steps)
    if plan.spilled:
        data["spilled"] = plan.spill_offsets
    if fitted is not None and (plan.external is not None or plan.spilled):
        data["external"] = external_json(fitted.analysis)
    return {**data, "plan_hash": plan_hash(data)}


EXTERNAL_FIELDS = ("external_tier", "external_image_bytes", "external_read_bytes",
                   "external_write_bytes", "external_reads", "erases_per_inference",
                   "staging_bytes", "key_bytes", "io_stall_ms", "decrypt_ms", "modelled_ms",
                   "slowdown",
                   "spill_tier", "spill_bytes", "external_writes", "spill_read_bytes",
                   "spill_reads", "spill_ms", "spill_slots", "lifetime_years",
                   "inferences_per_hour")
"""The report's out-of-core figures (see analysis.metrics.REPORT_JSON_FIELDS)."""


def external_json(analysis: Analysis) -> dict[str, object] | None:
    """What an out-of-core plan reads from and writes to external storage per inference.

    None when it uses none.
    """
    report = analysis.report
    if not report.external_tier and not report.spill_tier:
        return None
    return {name: getattr(report, name) for name in EXTERNAL_FIELDS}


def _buffer_json(buffer: Buffer) -> dict[str, object]:
    """One buffer; a channel slice of a concatenation also gives its pixel step."""
    data: dict[str, object] = {
        "name": buffer.name, "offset": buffer.offset, "size": buffer.size,
        "first_step": buffer.first_step, "last_step": buffer.last_step,
        "scratch": buffer.is_scratch}
    return data | ({"pixel_step": buffer.pixel_step} if buffer.pixel_step else {})


def plan_hash(data: dict[str, object]) -> str:
    """SHA-256 (hex) of a plan's JSON in canonical form (sorted keys, no spaces).

    Equal plans have equal hashes, on any machine however loaded.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def firmware_options(board_id: str, board_file: Path | None, io: Io | None,
                     memory_map: MemoryMap = MemoryMap.BOARD, arena_region: str | None = None,
                     weights_region: str | None = None) -> Firmware:
    """The Cortex-M firmware the compile options ask for.

    `io` None picks the board's console UART where the board database knows it, else
    semihosting.
    """
    if io is None:
        console = get_board(board_id, board_file).console
        io = Io.UART if console is not None and memory_map is MemoryMap.BOARD else (
            Io.SEMIHOSTING)
    return Firmware(memory_map, io, arena_region, weights_region)


def compile_model(
    model: Path | str, out_dir: Path, board_id: str = DEFAULT_BOARD,
    board_file: Path | None = None, target: str | None = "host",
    quantize: QuantizeOptions | None = None, force: bool = False, *,
    prefix: str | None = None, library: bool = False, firmware: Firmware = QEMU_SEMIHOSTING,
    fit_check: bool = True, patches: PatchRequest | None = None, fit: FitRequest | None = None,
    external_key: bytes | None = None,
) -> GeneratedProject:
    """Plan and generate the C project for `model` into `out_dir` (written atomically).

    `target` None builds for the board's own core. `firmware` says how a Cortex-M project is
    built around the model (address map, application, placement of arena and weights). A model
    that does not fit the board is refused, for the host target too, unless `fit_check` is off;
    `fit` may change it first (see fit_for_compile).

    An existing `out_dir` must be empty or an unchanged earlier mcuflow output; `force` replaces
    only the files mcuflow wrote there and keeps the rest. `prefix` (e.g. 'kws_') starts every
    model-level file, function, macro and symbol name instead of 'mcuflow_'; `library` writes
    a library (include/, src/, kernels/, CMake and make glue) instead of a runnable project.
    `external_key` (16 bytes) encrypts the external image (see compile_analysis).
    """
    if prefix is not None:
        Naming(prefix)
    fitted = fit_for_compile(model, board_id, board_file, target, quantize, firmware.io,
                             sealed_request(patches, external_key), fit, fit_check)
    return compile_analysis(fitted.analysis, out_dir, fitted.build.target or "host", force,
                            prefix=prefix, library=library, firmware=firmware,
                            external_key=external_key)


def fit_for_compile(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    target: str | None = "host", quantize: QuantizeOptions | None = None,
    application: Io | None = None, patches: PatchRequest | None = None,
    fit: FitRequest | None = None, fit_check: bool = True,
) -> Fitted:
    """What `compile` generates: the model analysed for the build, --fit applied, fit-checked.

    `target` None is the board's own core. A model that does not fit gets the fit advisor's
    options; with `fit_check`, one that still does not fit raises the does-not-fit error, whose
    hint names the advisor's best option.
    """
    target = board_target(get_board(board_id, board_file), target)
    fitted = fit_model(model, board_id, board_file, quantize, target, application, patches,
                       fit, advise=True)
    if fit_check and not fitted.analysis.fits:
        raise does_not_fit(fitted)
    return fitted


def does_not_fit(fitted: Fitted) -> McuflowError:
    """Which memory of the board the model overflows, and the fit advisor's best option."""
    analysis = fitted.analysis
    report = analysis.report
    needs = []
    if not report.fits_sram:
        needs.append(f"{report.sram_bytes - report.sram_margin_bytes:,} B of SRAM (has "
                     f"{report.sram_bytes:,})")
    elif analysis.plan.arena_bytes > analysis.patches.budget:
        needs.append(f"{analysis.plan.arena_bytes:,} B of SRAM (--sram-budget "
                     f"{analysis.patches.budget:,})")
    if not report.fits_flash:
        what = "weights" if report.flash_estimate is None else "code and constants"
        needs.append(f"{report.flash_bytes:,} B of flash for {what} (has "
                     f"{report.flash_capacity:,})")
    host = (" (a host build is checked against the board too)"
            if fitted.build.target == "host" else "")
    needs[0] += _patches_at_best(analysis)
    best = fitted.advice.best if fitted.advice else None
    return McuflowError(
        f"'{analysis.graph.name}' does not fit {analysis.board.id}{host}: needs "
        f"{' and '.join(needs)}{_best_needs(analysis, best)}", _fit_hint(best))


def _best_needs(analysis: Analysis, best: FitOption | None) -> str:
    """What the fit advisor's best option needs, when none fits and it differs from the model."""
    if best is None or best.fits or (best.peak_bytes, best.flash_bytes) == (
            analysis.plan.arena_bytes, analysis.report.flash_bytes):
        return ""
    return (f"; the fit advisor's best option, {best.name}, needs {best.peak_bytes:,} B of SRAM "
            f"and {best.flash_bytes:,} B of flash")


def _patches_at_best(analysis: Analysis) -> str:
    """How far patches bring the peak down, when the search found them to lower it."""
    search = analysis.patches
    smallest = min(search.options, key=lambda o: o.peak_bytes, default=None)
    if (analysis.report.fits_sram and analysis.plan.arena_bytes <= search.budget) or (
            smallest is None or smallest.peak_bytes >= search.baseline.peak_bytes):
        return ""
    return (f"; patches bring the peak down to {smallest.peak_bytes:,} B at best "
            f"({smallest.choice.grid()}, {100 * search.overhead(smallest):+.0f} % instructions)")


def _fit_hint(best: FitOption | None) -> str:
    """Where to go from a model that does not fit: the advisor's best option when it fits."""
    if best is None or not best.fits:
        return ("pick a larger board (`mcuflow boards`) or a smaller model (`mcuflow analyze` "
                "shows which layers need the memory), or pass --no-fit-check to generate the C "
                "anyway")
    kind = "exact" if best.exact else "lossy: it changes the model"
    return (f"the fit advisor's best option fits: {best.name} ({kind}), {best.description}, "
            f"peak {best.peak_bytes:,} B; apply it with --fit auto (or --fit {best.name}); "
            "`mcuflow analyze` lists every option ranked; --no-fit-check generates the C anyway")


def compile_analysis(analysis: Analysis, out_dir: Path, target: str = "host",
                     force: bool = False, *, prefix: str | None = None, library: bool = False,
                     firmware: Firmware = QEMU_SEMIHOSTING, external_key: bytes | None = None
                     ) -> GeneratedProject:
    """Generate the C project (or with `library`, the library) of an analysed model.

    With `external_key`, a plan with external weights gets its image AES-128-CTR encrypted and
    CMAC-authenticated under that key (the key is written nowhere; the firmware asks for it
    through mcuflow_external_key()); a plan without has nothing to encrypt.
    """
    naming = Naming() if prefix is None else Naming(prefix)
    source = write_tflite(analysis.graph)
    plan = encrypting(analysis.plan, external_key)
    if library:
        if external_key is not None:
            raise McuflowError("--encrypt-external makes a project, not a --library",
                               "compile without --library")
        if plan.external is not None:
            raise McuflowError(f"'{analysis.graph.name}' reads constants from the board's "
                               "external storage, which a --library does not ship yet",
                               "compile it as a project (without --library), or pick a board "
                               "whose flash holds it")
        return generate_library(analysis.graph, analysis.plan, out_dir, naming=naming,
                                target=target, source_model=source, force=force)
    return generate_project(analysis.graph, plan, out_dir, target=target,
                            board=analysis.board, source_model=source, force=force,
                            naming=naming, firmware=firmware, external_key=external_key)


def sealed_request(patches: PatchRequest | None, external_key: bytes | None
                   ) -> PatchRequest | None:
    """`patches` modelling an encrypted external image when `external_key` is given."""
    if external_key is None:
        return patches
    return dataclasses.replace(patches or PatchRequest(), encrypt_external=True)


def encrypting(plan: Plan, external_key: bytes | None) -> Plan:
    """`plan` with its external image and spilled activations encrypted under `external_key`.

    Unchanged without a key, or when it has neither an external image nor spills.
    """
    if external_key is None or (plan.external is None and not plan.spilled):
        return plan
    external = (None if plan.external is None
                else dataclasses.replace(plan.external, encrypted=True))
    return dataclasses.replace(plan, external=external, spill_encrypted=bool(plan.spilled))


@dataclass(frozen=True)
class Verification:
    """A verification's outcome, what --fit applied, and the patch stage's overhead.

    `overhead` is None without a patch stage; on QEMU's MPS2 machines (--target cortex-m*) it
    is measured against the unpatched plan, elsewhere only predicted.
    """

    result: VerifyResult | CortexMResult
    fitted: Fitted
    overhead: PatchOverhead | None = None

    @property
    def bit_exact(self) -> bool:
        """Every run bit-exact: the model's and the unpatched plan's of the overhead."""
        unpatched = None if self.overhead is None else self.overhead.unpatched_bit_exact
        return self.result.bit_exact and unpatched is not False

    def to_json(self) -> dict[str, object]:
        """The result's fields, `fit`, `external` (external_json) and `patches` (patch stage)."""
        data = {**dataclasses.asdict(self.result), "fit": fit_json(self.fitted),
                "external": external_json(self.fitted.analysis)}
        if self.overhead is not None:
            data["patches"] = dataclasses.asdict(self.overhead)
        return data


def _fitting(fitted: Fitted, fit: FitRequest | None) -> Fitted:
    """`fitted`, unless --fit auto found nothing that fits: then the does-not-fit error."""
    if fit is not None and fit.mode is FitMode.AUTO and not fitted.analysis.fits:
        raise does_not_fit(fitted)
    return fitted


def verify_model(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    runs: int = 20, seed: int = 0, sanitize: bool = True,
    quantize: QuantizeOptions | None = None, patches: PatchRequest | None = None,
    fit: FitRequest | None = None, external_key: bytes | None = None,
) -> Verification:
    """Build the generated C on the host and compare `runs` random inferences to the bit.

    A patch stage's overhead is only predicted: the host counts no instructions. With
    `external_key` the external image is encrypted (compile_analysis).
    """
    fitted = _fitting(fit_model(model, board_id, board_file, quantize, "host",
                                patches=sealed_request(patches, external_key), fit=fit), fit)
    result = verify_analysis(fitted.analysis, runs, seed, sanitize, external_key)
    return Verification(result, fitted, predicted_overhead(fitted.analysis))


def verify_analysis(
    analysis: Analysis, runs: int = 20, seed: int = 0, sanitize: bool = True,
    external_key: bytes | None = None,
) -> VerifyResult:
    """Build the C of an analysed model on the host; compare `runs` random inferences."""
    check_runs(runs)
    return verify_host(analysis.graph, encrypting(analysis.plan, external_key), runs, seed,
                       sanitize=sanitize, external_key=external_key)


def write_model(data: bytes, path: Path) -> None:
    """Write a model file atomically (an unpredictably named sibling renamed over `path`)."""
    write_file(path, data, "model")


def verify_cortexm_model(
    model: Path | str, target: str, board_id: str | None = None,
    board_file: Path | None = None, runs: int = 10, seed: int = 0, profile: bool = False,
    quantize: QuantizeOptions | None = None, patches: PatchRequest | None = None,
    fit: FitRequest | None = None, *, measure_patches: bool = True,
    external_key: bytes | None = None,
) -> Verification:
    """Build for a Cortex-M target, run on QEMU, compare to the bit, measure instructions.

    Without `board_id` the target's default board sizes the linker script. With a patch stage
    and `measure_patches`, the unpatched plan runs on the same inputs too and the overhead is
    measured (see measure.measure_overhead). With `external_key` the external image is
    encrypted (compile_analysis).
    """
    if board_id is not None:
        board_target(get_board(board_id, board_file), target)
    board_id = board_id or default_board(target).id
    fitted = _fitting(fit_model(model, board_id, board_file, quantize, target,
                                patches=sealed_request(patches, external_key),
                                fit=fit), fit)
    analysis = fitted.analysis
    result = verify_cortexm(analysis.graph, encrypting(analysis.plan, external_key), target,
                            analysis.board, runs, seed, profile, external_key=external_key)
    overhead = (measure_overhead(analysis, fitted.build, result, runs, seed) if measure_patches
                else None)
    return Verification(result, fitted, overhead)


def verify_board_model(
    model: Path | str, machine: str, board_id: str | None = None,
    board_file: Path | None = None, runs: int = 10, seed: int = 0,
    quantize: QuantizeOptions | None = None, patches: PatchRequest | None = None,
    fit: FitRequest | None = None,
) -> Verification:
    """Check the board-ready firmware bit-exact on the QEMU machine emulating the board's MCU.

    The firmware is what `compile --board` writes; records go over the console UART. Without
    `board_id`, the board of `machine` (netduino2: nucleo-f207zg, netduinoplus2: nucleo-f429zi).
    A patch stage's overhead is only predicted here (it is measured with --target).
    """
    board = get_board(board_id or machine_board(machine), board_file)
    emulated_by = board_machine(board.id).machine
    if emulated_by != machine:
        raise McuflowError(f"board '{board.id}' runs on QEMU {emulated_by}, not {machine}",
                           f"pass --machine {emulated_by}")
    check_runs(runs)
    fitted = _fitting(fit_model(model, board.id, board_file, quantize, board_target(board, None),
                                patches=patches, fit=fit), fit)
    analysis = fitted.analysis
    result = verify_board(analysis.graph, analysis.plan, analysis.board, runs, seed)
    note = f"measured with --target {result.target} (QEMU's MPS2 machines) only"
    return Verification(result, fitted, predicted_overhead(analysis, note))


def bench_models(
    models: list[Path], target: str, board_id: str | None = None, board_file: Path | None = None,
    patches: PatchRequest | None = None, fit: FitRequest | None = None,
) -> list[Verification]:
    """One bit-exact-checked QEMU measurement per model (two random inputs each)."""
    return [verify_cortexm_model(model, target, board_id, board_file, runs=2, patches=patches,
                                 fit=fit, measure_patches=False)
            for model in models]


def verify_compiled(
    directory: Path, runs: int = 20, seed: int = 0, sanitize: bool = True,
    external_key: bytes | None = None,
) -> VerifyResult:
    """Build a directory written by `compile` as it is and compare it with the reference.

    `external_key` is the key of an encrypted external image (given to the binary at run time).
    """
    model = directory / SOURCE_MODEL
    if not model.is_file():
        raise McuflowError(f"'{directory}' holds no {SOURCE_MODEL}",
                           "pass a directory written by `mcuflow compile`, or the model file")
    if (directory / LINKER_SCRIPT).is_file():
        machines = ", ".join(f"--board {board} --machine {known.machine}"
                             for board, known in BOARD_MACHINES.items())
        raise McuflowError(f"'{directory}' is Cortex-M firmware; the host builds only --target "
                           "host projects", "verify the model for the board you compiled for: "
                           f"`mcuflow verify MODEL` with {machines}, or --target for QEMU's "
                           "MPS2 machines")
    check_runs(runs)
    return verify_directory(directory, load_graph(model), runs, seed, sanitize=sanitize,
                            external_key=external_key)


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy on labelled samples of the int8 model and of its float original.

    `int8_balanced` is the int8 model's recall averaged over the classes the labels hold:
    on data of one dominant class, a model that always answers it scores its share in
    `int8`, but one over the classes here.
    """

    samples: int
    int8: float
    float32: float
    int8_balanced: float
    int8_answers: tuple[int, ...] = ()
    """The int8 model's class for each sample, in the samples' order."""

    def to_json(self) -> dict[str, float]:
        """The sample count and the accuracies (the answers left out)."""
        return {"samples": self.samples, "int8": self.int8, "float32": self.float32,
                "int8_balanced": self.int8_balanced}


def evaluation_data(path: Path | str) -> tuple[Calibration, np.ndarray | None]:
    """Held-out samples, and labels when the .npz (or those of a folder) hold arrays `x` and `y`.

    `y` holds class indices ([N] or [N, 1]) or one-hot rows ([N, classes]); other data is
    samples only (see load_calibration).
    """
    try:
        data = load_calibration(path)
    except CalibrationError as error:
        raise CalibrationError(f"evaluation data: {error.message}", error.hint) from None
    if set(data.arrays) != {"x", "y"}:
        return data, None
    labels = np.concatenate([_class_indices(y) for y in data.arrays["y"]])
    return Calibration({"": data.arrays["x"]}), labels


def _class_indices(labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        return np.argmax(labels, axis=1)
    if labels.ndim > 2 or not np.array_equal(labels, np.round(labels)):
        raise McuflowError(f"labels 'y' of shape {labels.shape} are neither class indices nor "
                           "one-hot rows", "store y as [N] integer classes or [N, classes] "
                           "one-hot rows")
    return labels.reshape(-1).astype(np.int64)


def accuracy(result: QuantizeResult, samples: Calibration, labels: np.ndarray) -> Accuracy:
    """Top-1 accuracy (arg-max of the first output) of both models on labelled samples."""
    model = FloatModel(result.float_graph, result.input_perms, result.output_perms)
    inputs = calibration_samples(model, samples)
    if len(inputs) != len(labels):
        raise McuflowError(f"evaluation data: {len(inputs)} samples in 'x' but {len(labels)} "
                           "labels in 'y'", "give one label per sample")
    graph, interpreter = result.graph, Interpreter(result.graph)
    int8_answers, float_right = [], 0
    for sample, label in zip(inputs, labels, strict=True):
        quantized = [quantize_values(x, graph.tensor(n).quant, graph.tensor(n).dtype)
                     for n, x in zip(graph.inputs, sample, strict=True)]
        int8_answers.append(int(np.argmax(interpreter.run(quantized).outputs[0])))
        with np.errstate(all="ignore"):
            float_right += int(np.argmax(run_float(result.float_graph, sample).outputs[0])
                               == label)
    answers, truth = np.asarray(int8_answers, np.int64), np.asarray(labels, np.int64)
    int8 = scores(truth, answers, int(max(truth.max(initial=0), answers.max(initial=0))) + 1)
    return Accuracy(len(labels), int8.accuracy, float_right / max(len(labels), 1),
                    int8.balanced_accuracy, tuple(int8_answers))


def validate_model(
    model: Path | str, data: Path | str, board_id: str | None = None,
    board_file: Path | None = None, target: str = "host",
    quantize: QuantizeOptions | None = None, float_model: Path | str | None = None,
    patches: PatchRequest | None = None, fit: FitRequest | None = None,
    progress: Progress | None = None,
) -> tuple[Validation, Fitted]:
    """`verify --data`: the C for `target` (host or QEMU) run over the samples of `data`.

    `data` is an .npz (or a folder of them) of samples `x` in the model's layout and optional
    labels `y` (see evaluation_data). A float model quantised on the fly (`quantize`) is also
    the float model scored beside the int8 one; `float_model` (a float .tflite or .onnx) names
    it for an int8 (or QDQ ONNX) model. With labels, LiteRT runs the int8 .tflite too (see
    validation.validate).
    """
    if not Path(data).exists():
        raise McuflowError(f"no such data file or folder: '{data}'",
                           "pass an .npz holding samples x (and labels y), or a folder of them")
    samples, labels = evaluation_data(data)
    path = model_path(model)
    if quantize is None and not _quantized_here(path):
        graph = load_graph(path)
        reference = Reference({n: tuple(range(len(graph.tensor(n).shape))) for n in graph.inputs},
                              path)
    else:
        result = load_quantized(path, quantize)
        graph = result.graph
        own = None if quantize is None else FloatModel(result.float_graph, result.input_perms,
                                                       result.output_perms)
        reference = Reference(result.input_perms, result.tflite(), own)
    if float_model is not None:
        reference = dataclasses.replace(reference, float_model=load_float_model(float_model))
    if target != "host" and board_id is not None:
        board_target(get_board(board_id, board_file), target)
    board_id = board_id or (DEFAULT_BOARD if target == "host" else default_board(target).id)
    build = build_for(board_id, board_file, target)
    request = patches or PatchRequest()
    fitted = _fitting(fit_analysis(analyze_graph(graph, build, request), build, request,
                                   fit or FitRequest()), fit)
    return validate(fitted.analysis, Dataset(samples, labels), reference, target,
                    progress), fitted


DEFAULT_REPORT_RATE_HZ = 1.0 / 60.0
"""The inference rate the report's energy section assumes unless told: one a minute."""


def report_page(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    quantize: QuantizeOptions | None = None, *, measure: bool = False, runs: int = 10,
    seed: int = 0, rate_hz: float = DEFAULT_REPORT_RATE_HZ, battery: Battery | None = None,
    patches: PatchRequest | None = None,
) -> Page:
    """What `mcuflow report` shows: analysis, advice, plots, quantisation, exactness, energy.

    Exactness is checked on the host and, with `measure`, on QEMU for the board's core, with
    the instructions of every layer.

    The host verification is reported, not raised, when it cannot run (e.g. no C compiler);
    with `measure`, a failure to build or run on QEMU is an error.
    """
    check_runs(runs)
    fitted = fit_model(model, board_id, board_file, quantize, patches=patches, advise=True)
    analysis = fitted.analysis
    energy = _report_energy(analysis, rate_hz, battery or BATTERIES["CR2032"])
    quantized = (load_quantized(model, quantize)
                 if quantize is not None or _quantized_here(model) else None)
    host, host_error = None, None
    try:
        host = dataclasses.asdict(verify_model(model, board_id, board_file, runs, seed,
                                               quantize=quantize, patches=patches).result)
    except McuflowError as error:
        host_error = f"{error.message} ({error.hint})" if error.hint else error.message
    measured, note = (_report_measure(analysis, model, board_id, board_file, runs, seed,
                                      quantize, patches) if measure else (None, None))
    return Page(
        model=analysis.graph.name, source=model_path(model).name,
        version=importlib.metadata.version("mcuflow"), report=analysis.report,
        fits=analysis.fits, sram_budget=analysis.patches.budget,
        arena_bytes=analysis.plan.arena_bytes, patches_line=patches_line(analysis.patches),
        advice=advice_json(fitted.advice), fit_line=fit_line(fitted),
        quant_layers=layer_quant(analysis.graph),
        quant_report=quantized.report if quantized else None,
        kept=quantized.kept if quantized else None, host=host, host_error=host_error,
        measured=measured, measured_note=note, energy=energy, figures=_report_figures(
            analysis, energy))


def _report_figures(analysis: Analysis, energy: EnergyReport) -> Figures:
    """The working-set, arena and battery-life plots as inline SVG."""
    with literal_text():
        return Figures(figure_svg(working_set_figure(analysis.report), "ws"),
                       _arena_svg(analysis.plan, analysis.report.staging_bytes),
                       figure_svg(life_figure(energy), "life"))


def report_model(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None,
    quantize: QuantizeOptions | None = None, *, measure: bool = False, runs: int = 10,
    seed: int = 0, rate_hz: float = DEFAULT_REPORT_RATE_HZ, battery: Battery | None = None,
    patches: PatchRequest | None = None,
) -> str:
    """The one-page HTML report of `model` on the board (see report_page).

    One self-contained document: inline CSS and SVG, no script, nothing loaded from the network.
    """
    return render_page(report_page(model, board_id, board_file, quantize, measure=measure,
                                   runs=runs, seed=seed, rate_hz=rate_hz, battery=battery,
                                   patches=patches))


def write_report(page: str, path: Path) -> None:
    """Write the HTML report atomically (see outputs.write_file)."""
    write_file(path, page.encode("utf-8"), "report")


def _report_energy(analysis: Analysis, rate_hz: float, battery: Battery) -> EnergyReport:
    """The duty-cycle budget at `rate_hz`, as `mcuflow energy` computes it."""
    plan = analysis.plan
    sram = weights_in_sram(plan.graph, analysis.board, analysis.report, plan.order,
                           planned_steps(plan))
    return energy_report(analysis.board, analysis.report, sram, rate_hz, battery)


def _report_measure(
    analysis: Analysis, model: Path | str, board_id: str, board_file: Path | None, runs: int,
    seed: int, quantize: QuantizeOptions | None, patches: PatchRequest | None,
) -> tuple[dict[str, Any], str | None]:
    """The QEMU run for the board's core, profiled per layer; a note when its steps differ."""
    target = board_target(analysis.board, None)
    verified = verify_cortexm_model(model, target, board_id, board_file, runs, seed,
                                    profile=True, quantize=quantize, patches=patches,
                                    measure_patches=False)
    result = verified.result
    steps = [(layer.op, layer.name) for layer in result.layers]
    if steps == [(layer.op, layer.name) for layer in analysis.report.layers]:
        return dataclasses.asdict(result), None
    return dataclasses.asdict(result), ("the QEMU build planned other steps than the analysis "
                                        "(see the per-layer profile of `mcuflow verify --target "
                                        f"{target} --profile`); only the totals are shown")


def _arena_svg(plan: Plan, staging_bytes: int) -> str:
    """The memory plan's picture (memory.plot) as inline SVG."""
    with tempfile.TemporaryDirectory(prefix="mcuflow-report-") as scratch:
        path = plot_arena(plan, Path(scratch) / "arena.svg", staging_bytes)
        return svg_markup(path.read_text(encoding="utf-8"), "arena")


def onnxruntime_check(model: ModelSource, runs: int, seed: int
                      ) -> OnnxRuntimeAgreement | None:
    """A QDQ ONNX or PT2E model's int8 outputs against ONNX Runtime's, in LSB; None for others.

    `runs` random inputs the model's first QuantizeLinear represents exactly (see agreement).
    """
    if not _quantized_here(model):
        return None
    quantized = load_quantized(model)
    data = torch_to_onnx(model) if is_torch_model(model) else model_path(model).read_bytes()
    return onnxruntime_agreement(data, quantized, random_model_inputs(quantized, runs, seed))
