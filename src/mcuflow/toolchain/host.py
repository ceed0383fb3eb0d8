"""Host toolchain: build a generated project with gcc or clang, run it, verify it bit-exact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from mcuflow.codegen.external import IMAGE_FILE
from mcuflow.codegen.external_crypto import KEY_FILE
from mcuflow.codegen.project import MARKER, generate_project
from mcuflow.codegen.render import TensorSpec
from mcuflow.errors import McuflowError, ToolchainError
from mcuflow.frontends.files import check_regular, read_bounded
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.plan import Plan
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.records import input_records, split_outputs

DEBIAN_PACKAGE = {"gcc": "gcc", "cc": "gcc", "clang": "clang"}
WARNING_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZER_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer")
DRIVER = "main.c"
RUN_TIMEOUT_S = 600
MAX_RUNS = 1_000_000
"""`verify --runs` at most: a million inferences of a small model already take hours."""
CHUNK_RUNS = 256
"""Runs drawn, executed, compared and dropped together: memory does not grow with --runs."""
CHUNK_BYTES = 32 << 20
"""At most this many bytes of input and output records in one chunk (large models)."""
MAX_SOURCE_BYTES = 64 << 20
"""mcuflow_model.h of a compiled directory is read whole only up to this size."""
_DIRECTORY_HINT = "regenerate the project with `mcuflow compile`"
_SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
                  "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def find_compiler(compiler: str) -> str:
    """Absolute path of `compiler`, or a ToolchainError naming the Debian package to install."""
    path = shutil.which(compiler)
    if path is None:
        package = DEBIAN_PACKAGE.get(Path(compiler).name, "gcc")
        raise ToolchainError(f"C compiler '{compiler}' not found",
                             f"install it: sudo apt-get install {package}")
    return path


def run_tool(command: list[str], cwd: Path, what: str, timeout: float = RUN_TIMEOUT_S,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `command` in `cwd`; ToolchainError naming `what` when it times out or fails."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what} took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-3000:]
        raise ToolchainError(f"{what} failed (exit {result.returncode}): {tail}")
    return result


def model_sources(project_dir: Path) -> list[str]:
    """The model's C files of a project (everything but the target's driver)."""
    return sorted(p.name for p in Path(project_dir).glob("*.c") if p.name != DRIVER)


def build_host(project_dir: Path, sanitize: bool = False, compiler: str = "gcc", *,
               opt_level: str = "-O2", output: Path | None = None) -> Path:
    """Compile the project's driver and model; returns the binary.

    Flags: `-std=c99 -Wall -Wextra -Werror -pedantic`, plus AddressSanitizer and
    UndefinedBehaviorSanitizer when `sanitize`.
    """
    project_dir = Path(project_dir).absolute()
    cc = find_compiler(compiler)
    if output is None:
        suffix = "-san" if sanitize else ""
        output = project_dir / "build" / f"model-{Path(compiler).name}{opt_level}{suffix}"
    output.parent.mkdir(parents=True, exist_ok=True)
    flags = [*WARNING_FLAGS, opt_level, *(SANITIZER_FLAGS if sanitize else ())]
    sources = [DRIVER, *model_sources(project_dir)]
    run_tool([cc, *flags, "-o", str(output), *sources, "-lm"], project_dir,
             f"{compiler} build of {project_dir.name}")
    return output


def code_bytes(project_dir: Path, compiler: str = "gcc", opt_level: str = "-O2") -> int:
    """Bytes of executable code of the model (kernels and layer calls, weights excluded).

    The sum of the executable sections of each model object file compiled at `opt_level`.
    """
    project_dir = Path(project_dir).absolute()
    cc = find_compiler(compiler)
    with tempfile.TemporaryDirectory(prefix="mcuflow-size-") as scratch:
        total = 0
        for source in model_sources(project_dir):
            obj = Path(scratch) / f"{source}.o"
            run_tool([cc, *WARNING_FLAGS, opt_level, "-c", source, "-o", str(obj)], project_dir,
                     f"{compiler} compile of {source}")
            with obj.open("rb") as handle:
                total += sum(s["sh_size"] for s in ELFFile(handle).iter_sections()
                             if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR)
        return total


def place_external(directory: Path, image: Path | None, key: bytes | None) -> None:
    """Put an external image (IMAGE_FILE) and its key (KEY_FILE) where the program reads them.

    `directory` is the working directory of the host binary or of QEMU (semihosting).
    """
    if image is not None:
        shutil.copyfile(image, directory / IMAGE_FILE)
    if key is not None:
        (directory / KEY_FILE).write_bytes(key)


def external_image(project_dir: Path) -> Path | None:
    """The project's external weights image (IMAGE_FILE), None when it has none."""
    path = Path(project_dir) / IMAGE_FILE
    return path if path.is_file() else None


def run_host(binary: Path, inputs: Sequence[np.ndarray], output_specs: Sequence[TensorSpec],
             image: Path | None = None, key: bytes | None = None) -> list[np.ndarray]:
    """Run a host binary on many inferences at once.

    `inputs[i]` holds graph input i of every run stacked on a leading axis (runs, *shape), in
    the input's dtype; the result holds each output the same way. `image` (a model with
    external weights) is copied beside the records as IMAGE_FILE, where the binary reads it;
    `key` (an encrypted image's) is written there as KEY_FILE.
    """
    records = input_records(inputs)
    env = {**os.environ, **_SANITIZER_ENV}
    with tempfile.TemporaryDirectory(prefix="mcuflow-run-") as scratch:
        in_path, out_path = Path(scratch) / "input.bin", Path(scratch) / "output.bin"
        in_path.write_bytes(records)
        place_external(Path(scratch), image, key)
        run_tool([str(binary), str(in_path), str(out_path)], Path(scratch),
                 f"running {Path(binary).name}", env=env)
        data = out_path.read_bytes()
    return split_outputs(data, len(inputs[0]), output_specs, Path(binary).name)


def bench_host(binary: Path, inputs: Sequence[np.ndarray], iterations: int) -> float:
    """Seconds per inference of a (non-sanitised) host binary.

    Timed inside the C with clock_gettime over `iterations` inferences of one input record.
    """
    record = b"".join(np.ascontiguousarray(x).tobytes() for x in inputs)
    with tempfile.TemporaryDirectory(prefix="mcuflow-bench-") as scratch:
        in_path = Path(scratch) / "input.bin"
        in_path.write_bytes(record)
        result = run_tool([str(binary), "--bench", str(iterations), str(in_path)], Path(scratch),
                          f"benchmarking {Path(binary).name}")
    return float(result.stdout.split()[-1]) * 1e-9


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify_host`: generated C against the reference interpreter (and LiteRT)."""

    bit_exact: bool
    runs: int
    mismatches: int  # runs whose outputs differ from the reference interpreter in any byte
    litert_mismatches: int | None  # the same against the peer runtime; None when unavailable
    arena_bytes: int
    code_bytes: int
    weight_bytes: int
    compiler: str
    peer: str = "LiteRT"  # the runtime litert_mismatches counts against (peer_runtime)


def check_runs(runs: int) -> None:
    """McuflowError unless 1 <= `runs` <= MAX_RUNS (what `verify --runs` accepts)."""
    if not 1 <= runs <= MAX_RUNS:
        raise McuflowError(f"--runs must be between 1 and {MAX_RUNS:,}, not {runs}",
                           hint="e.g. --runs 20")


def chunk_runs(graph: Graph) -> int:
    """Runs per chunk: CHUNK_RUNS, or fewer so that their records stay within CHUNK_BYTES."""
    record = sum(graph.tensor(name).nbytes for name in (*graph.inputs, *graph.outputs))
    return max(1, min(CHUNK_RUNS, CHUNK_BYTES // max(record, 1)))


def random_inputs(graph: Graph, runs: int, seed: int) -> list[np.ndarray]:
    """Per graph input, `runs` random values stacked: uniform over int8, N(0, 1) for float."""
    return _draw(graph, np.random.default_rng(seed), runs)


def _draw(graph: Graph, rng: np.random.Generator, runs: int) -> list[np.ndarray]:
    stacked = []
    for name in graph.inputs:
        tensor = graph.tensors[name]
        shape = (runs, *tensor.shape)
        if tensor.dtype.numpy.kind == "f":
            stacked.append(rng.standard_normal(shape).astype(tensor.dtype.numpy))
        else:
            info = np.iinfo(tensor.dtype.numpy)
            stacked.append(rng.integers(info.min, info.max + 1, shape, tensor.dtype.numpy))
    return stacked


def input_chunks(graph: Graph, runs: int, seed: int) -> Iterator[list[np.ndarray]]:
    """`runs` random inputs as random_inputs makes them, in chunks of chunk_runs(graph) runs.

    One generator draws the chunks in turn: the inputs depend on the seed and the graph only,
    and with a single chunk they are random_inputs(graph, runs, seed).
    """
    rng, size = np.random.default_rng(seed), chunk_runs(graph)
    for start in range(0, runs, size):
        yield _draw(graph, rng, min(size, runs - start))


def _count_mismatches(expected: list[list[np.ndarray]], actual: list[np.ndarray]) -> int:
    """Runs in which any output differs (bytewise, so float NaNs compare by bit pattern)."""
    return sum(
        any(np.ascontiguousarray(e).tobytes() != np.ascontiguousarray(a[r]).tobytes()
            for e, a in zip(run, actual, strict=True))
        for r, run in enumerate(expected)
    )


Oracle = Callable[[list[np.ndarray]], list[list[np.ndarray]]]
"""Stacked inputs of some runs -> the outputs of each run."""


TFLM_CHECKED_KINDS = frozenset({OpKind.SUM})
"""Kinds LiteRT cannot check: its reference int8 SUM runs the uint8 code on int8 data, and its
optimised SUM rounds differently from TensorFlow's reference arithmetic, which mcuflow and
tflite-micro follow. Graphs with them are checked against tflite-micro instead."""
TFLM_ARENA_BYTES = 1 << 24


def peer_runtime(graph: Graph) -> str:
    """The runtime a graph's outputs are checked against besides the reference interpreter."""
    kinds = {op.kind for op in graph.operators}
    return "tflite-micro" if kinds & TFLM_CHECKED_KINDS else "LiteRT"


def _peer_oracle(graph: Graph) -> Oracle | None:
    """The peer runtime (peer_runtime) loaded once; None when it is not installed."""
    return _tflm_oracle(graph) if peer_runtime(graph) == "tflite-micro" else _litert_oracle(graph)


def _tflm_oracle(graph: Graph) -> Oracle | None:
    """tflite-micro's interpreter over `graph`, loaded once; None when it is not installed."""
    try:
        from tflite_micro.python.tflite_micro import runtime as tflm
    except ImportError:
        return None
    from mcuflow.frontends.tflite_writer import write_tflite

    with _litert_errors():
        interpreter = tflm.Interpreter.from_bytes(write_tflite(graph),
                                                  arena_size=TFLM_ARENA_BYTES)

    def outputs(inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
        results = []
        with _litert_errors():
            interpreter.reset()
            for r in range(len(inputs[0])):
                for index, x in enumerate(inputs):
                    interpreter.set_input(x[r], index)
                interpreter.invoke()
                results.append([interpreter.get_output(i).copy()
                                for i in range(len(graph.outputs))])
        return results

    return outputs


def _litert_oracle(graph: Graph) -> Oracle | None:
    """LiteRT with its reference kernels, loaded once; None when LiteRT is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter as LiteRT
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        return None
    from mcuflow.frontends.tflite_writer import write_tflite

    with _litert_errors():
        interpreter = LiteRT(model_content=write_tflite(graph), num_threads=1,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interpreter.allocate_tensors()

    def outputs(inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
        results = []
        with _litert_errors():
            interpreter.reset_all_variables()
            for r in range(len(inputs[0])):
                for detail, x in zip(interpreter.get_input_details(), inputs, strict=True):
                    interpreter.set_tensor(detail["index"], x[r])
                interpreter.invoke()
                results.append([interpreter.get_tensor(d["index"]).copy()
                                for d in interpreter.get_output_details()])
        return results

    return outputs


@contextmanager
def _litert_errors() -> Iterator[None]:
    try:
        yield
    except (RuntimeError, ValueError) as error:
        raise ToolchainError(f"the peer runtime could not run the model: {error}",
                             "verify against the reference interpreter only") from None


@dataclass(frozen=True)
class Comparison:
    """Runs whose outputs differ from the reference interpreter's (and LiteRT's, or None)."""

    mismatches: int
    litert_mismatches: int | None


def compare_runs(graph: Graph, runs: int, seed: int,
                 execute: Callable[[list[np.ndarray]], list[np.ndarray]], *,
                 order: Sequence[int] | None = None, litert: bool = False) -> Comparison:
    """Execute `runs` random inputs chunk by chunk and compare each chunk's outputs at once.

    `execute` maps stacked inputs to stacked outputs (a binary, QEMU). Every chunk is drawn,
    executed, compared and dropped before the next, so memory does not grow with `runs`. Each
    chunk is a fresh program run, whose state (SVDF's, an LSTM's) starts afresh: so do the
    oracles, which carry their state from one run of the chunk to the next as the program does.
    """
    oracle = _peer_oracle(graph) if litert else None
    mismatches, litert_mismatches = 0, 0
    for inputs in input_chunks(graph, runs, seed):
        interpreter = Interpreter(graph, order)
        actual = execute(inputs)
        expected = [interpreter.run([x[r] for x in inputs]).outputs
                    for r in range(len(inputs[0]))]
        mismatches += _count_mismatches(expected, actual)
        if oracle is not None:
            litert_mismatches += _count_mismatches(oracle(inputs), actual)
    return Comparison(mismatches, None if oracle is None else litert_mismatches)


def verify_host(graph: Graph, plan: Plan, runs: int = 20, seed: int = 0, *,
                sanitize: bool = True, compiler: str = "gcc", litert: bool = True,
                external_key: bytes | None = None) -> VerifyResult:
    """Generate, build and run the C of `plan` on `runs` random inputs; compare the outputs.

    Every output is compared with the reference interpreter, and with LiteRT when it is
    installed and `litert` is true. The runs go in chunks (compare_runs): memory does not
    depend on `runs`. `external_key` encrypts an encrypted plan's image and is given to the
    binary as KEY_FILE.
    """
    check_runs(runs)
    with tempfile.TemporaryDirectory(prefix="mcuflow-verify-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project",
                                   external_key=external_key)
        binary = build_host(project.path, sanitize=sanitize, compiler=compiler,
                            opt_level="-O1" if sanitize else "-O2")
        compared = compare_runs(graph, runs, seed,
                                lambda inputs: run_host(binary, inputs, project.outputs,
                                                        external_image(project.path),
                                                        external_key),
                                order=plan.order_in(graph), litert=litert)
        code = code_bytes(project.path, compiler)
    return VerifyResult(
        bit_exact=compared.mismatches == 0 and not compared.litert_mismatches, runs=runs,
        mismatches=compared.mismatches, litert_mismatches=compared.litert_mismatches,
        arena_bytes=plan.arena_bytes, code_bytes=code, weight_bytes=project.weight_bytes,
        compiler=compiler, peer=peer_runtime(graph),
    )


def _header_number(project_dir: Path, macro: str) -> int:
    marker = project_dir / MARKER
    text = read_bounded(marker, f"'{marker}'", _DIRECTORY_HINT, MAX_SOURCE_BYTES)
    match = re.search(rf"#define {macro} (\d+)", text.decode("ascii", "replace"))
    if match is None:
        raise McuflowError(f"{marker} lacks {macro}", _DIRECTORY_HINT)
    return int(match.group(1))


def _check_sources(project_dir: Path) -> None:
    """The C files the compiler reads from a user's directory are regular files, not pipes."""
    for path in sorted([*project_dir.glob("*.c"), *project_dir.glob("*.h")]):
        check_regular(path, f"'{path}'", _DIRECTORY_HINT)


def verify_directory(project_dir: Path, graph: Graph, runs: int = 20, seed: int = 0, *,
                     sanitize: bool = True, compiler: str = "gcc", litert: bool = True,
                     external_key: bytes | None = None) -> VerifyResult:
    """Build an existing project directory as it is and compare its outputs to the bit.

    `graph` is the model the directory was generated from; the reference interpreter's outputs
    do not depend on the memory plan, so any plan's C must reproduce them. The runs go in
    chunks (compare_runs): memory does not depend on `runs`. `external_key` (an encrypted
    image's) is given to the binary as KEY_FILE.
    """
    check_runs(runs)
    _check_sources(project_dir)
    arena_bytes = _header_number(project_dir, "MCUFLOW_ARENA_BYTES")
    weight_bytes = _header_number(project_dir, "MCUFLOW_WEIGHT_BYTES")
    specs = [TensorSpec(name, graph.tensor(name).shape, graph.tensor(name).dtype.value, None,
                        None, 0) for name in graph.outputs]
    with tempfile.TemporaryDirectory(prefix="mcuflow-verify-") as scratch:
        binary = build_host(project_dir, sanitize=sanitize, compiler=compiler,
                            opt_level="-O1" if sanitize else "-O2",
                            output=Path(scratch) / "model")
        image = external_image(project_dir)
        compared = compare_runs(graph, runs, seed,
                                lambda inputs: run_host(binary, inputs, specs, image,
                                                        external_key),
                                litert=litert)
    return VerifyResult(
        bit_exact=compared.mismatches == 0 and not compared.litert_mismatches, runs=runs,
        mismatches=compared.mismatches, litert_mismatches=compared.litert_mismatches,
        arena_bytes=arena_bytes, code_bytes=code_bytes(project_dir, compiler),
        weight_bytes=weight_bytes, compiler=compiler, peer=peer_runtime(graph),
    )
