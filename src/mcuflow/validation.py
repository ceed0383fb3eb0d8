"""Verify over the user's own data: the on-target C's accuracy beside LiteRT's and the float's."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph, Tensor
from mcuflow.planning import Analysis
from mcuflow.ptq import FloatModel
from mcuflow.quant.affine import quantize_values
from mcuflow.quant.calibration_data import Calibration
from mcuflow.quant.report import dequantize, sqnr_db
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import Interpreter
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.host import build_host, chunk_runs, run_host
from mcuflow.toolchain.qemu import run_qemu

MAX_SAMPLES = 100_000
"""Samples verified at most: each runs the reference interpreter (and LiteRT, the float model)."""
LITERT_HINT = ("install LiteRT, whose accuracy is shown beside the target's: "
               "pip install ai-edge-litert (or pip install 'mcuflow[test]')")

Progress = Callable[[int, int], None]
"""(samples done, samples in all): called as the verification advances."""
Execute = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Stacked input codes of some samples -> the stacked outputs of each."""


@dataclass(frozen=True)
class Dataset:
    """Samples by graph input name ('' for a model's only input), model layout; labels or None."""

    samples: Calibration
    labels: np.ndarray | None


@dataclass(frozen=True)
class Reference:
    """What the C's outputs are weighed against: LiteRT's int8 model, the float model.

    `litert` is the .tflite LiteRT runs (the user's file, or the model quantised on the fly);
    `input_perms[name]` maps an input of the model's layout to the IR's (NCHW -> NHWC for ONNX).
    """

    input_perms: dict[str, tuple[int, ...]]
    litert: bytes | Path | None = None
    float_model: FloatModel | None = None


@dataclass(frozen=True)
class ClassScore:
    """Precision and recall of one class; `support` is its number of labelled samples."""

    label: int
    precision: float
    recall: float
    support: int

    def to_json(self) -> dict[str, object]:
        """`class`, `precision`, `recall`, `support`."""
        return {"class": self.label, "precision": self.precision, "recall": self.recall,
                "support": self.support}


@dataclass(frozen=True)
class Scores:
    """Top-1 accuracy, per-class precision and recall, confusion matrix (rows: true class)."""

    accuracy: float
    per_class: tuple[ClassScore, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]

    @property
    def balanced_accuracy(self) -> float:
        """Recall averaged over the classes that have labelled samples (0 without any)."""
        recalls = [score.recall for score in self.per_class if score.support]
        return float(np.mean(recalls)) if recalls else 0.0

    def to_json(self) -> dict[str, object]:
        """`accuracy`, `per_class` and `confusion_matrix`."""
        return {"accuracy": self.accuracy,
                "per_class": [score.to_json() for score in self.per_class],
                "confusion_matrix": [list(row) for row in self.confusion_matrix]}


@dataclass(frozen=True)
class OutputError:
    """The dequantised int8 outputs against the float model's, over every sample and output."""

    sqnr_db: float
    max_abs_error: float


@dataclass(frozen=True)
class Validation:
    """The C run over a data set: bit-exactness against the reference interpreter, and scores.

    `target` is where the C ran (host or a Cortex-M core on `machine`); `scores` are the
    target's, `litert` and `float32` those of LiteRT and the float model (None when not run);
    `error` compares the int8 outputs with the float model's (None without a float model).
    """

    model: str
    target: str
    machine: str
    samples: int
    mismatching_samples: int
    scores: Scores | None
    litert: Scores | None
    float32: Scores | None
    error: OutputError | None
    notes: tuple[str, ...] = field(default=())

    @property
    def bit_exact(self) -> bool:
        """The C's outputs equal the reference interpreter's on every sample."""
        return self.mismatching_samples == 0

    def to_json(self) -> dict[str, object]:
        """The fields `verify --data --json` prints."""
        data: dict[str, object] = {
            "model": self.model, "target": self.target, "machine": self.machine,
            "samples": self.samples, "bit_exact": self.bit_exact,
            "mismatching_samples": self.mismatching_samples}
        if self.scores is not None:
            data.update(self.scores.to_json())
        for name, scores in (("litert", self.litert), ("float", self.float32)):
            if scores is not None:
                data[name] = scores.to_json()
        if self.error is not None:
            data.update(sqnr_db=self.error.sqnr_db, max_abs_error=self.error.max_abs_error)
        return {**data, "notes": list(self.notes)}


def scores(labels: np.ndarray, predictions: np.ndarray, classes: int) -> Scores:
    """Accuracy, per-class precision and recall (0 when undefined) and the confusion matrix."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    right = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    per_class = tuple(
        ClassScore(k, _ratio(right[k], predicted[k]), _ratio(right[k], support[k]),
                   int(support[k])) for k in range(classes))
    return Scores(_ratio(right.sum(), len(labels)), per_class,
                  tuple(tuple(int(n) for n in row) for row in matrix))


def _ratio(part: int, whole: int) -> float:
    return float(part / whole) if whole else 0.0


def model_inputs(graph: Graph, data: Dataset, perms: dict[str, tuple[int, ...]]
                 ) -> list[np.ndarray]:
    """Per graph input, every sample as float32 in the IR's layout, stacked: (N, *shape)."""
    stacked = []
    for name in graph.inputs:
        arrays = data.samples.arrays.get(name, data.samples.arrays.get("")
                                         if len(graph.inputs) == 1 else None)
        if not arrays:
            raise McuflowError(f"data: no samples for input '{name}' (found "
                               f"{sorted(data.samples.arrays)})",
                               "key the .npz arrays by the model's input names")
        perm = perms.get(name, tuple(range(len(graph.tensor(name).shape))))
        shape = _model_shape(graph.tensor(name).shape, perm)
        joined = np.concatenate([_samples(a, shape, name) for a in arrays])
        stacked.append(joined.transpose((0, *(axis + 1 for axis in perm))))
    counts = {len(x) for x in stacked}
    if len(counts) != 1:
        raise McuflowError(f"data: the inputs have different numbers of samples {counts}",
                           "give every input the same number of samples")
    if not 1 <= counts.pop() <= MAX_SAMPLES:
        raise McuflowError(f"data: holds no samples, or more than {MAX_SAMPLES:,}",
                           "verify on a representative test set")
    return stacked


def _model_shape(ir_shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    shape = [0] * len(perm)
    for axis, source in enumerate(perm):
        shape[source] = ir_shape[axis]
    return tuple(shape)


def _samples(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """`array` as (N, *shape) float32: samples stacked with or without their batch axis of 1."""
    if array.ndim == len(shape) and shape[0] == 1 and array.shape[1:] == shape[1:]:
        return array.astype(np.float32).reshape(len(array), *shape)
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
        return array.astype(np.float32)
    inner = ", ".join(map(str, shape[1:] if shape[0] == 1 else shape))
    raise McuflowError(f"data: samples of shape {array.shape} do not fit input '{name}' of "
                       f"shape {shape}", f"store the samples as [N, {inner}] arrays")


def check_labels(labels: np.ndarray, samples: int, classes: int) -> None:
    """One class index in [0, classes) per sample, else McuflowError."""
    if len(labels) != samples:
        raise McuflowError(f"data: {samples} samples in 'x' but {len(labels)} labels in 'y'",
                           "give one label per sample")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise McuflowError(f"data: labels range over {labels.min()}..{labels.max()} but the "
                           f"model's first output has {classes} classes",
                           "label the classes 0..classes-1, in the order of the model's outputs")


def encode(values: np.ndarray, tensor: Tensor) -> np.ndarray:
    """Float values as a graph input takes them: int8 codes by its scale and zero point."""
    if tensor.dtype.numpy.kind == "f" or tensor.quant is None:
        return values.astype(tensor.dtype.numpy)
    return quantize_values(values, tensor.quant, tensor.dtype)


@contextmanager
def c_program(analysis: Analysis, target: str) -> Iterator[Execute]:
    """The generated C built for `target` (host, or a Cortex-M core run on QEMU)."""
    graph, plan = analysis.graph, analysis.plan
    with tempfile.TemporaryDirectory(prefix="mcuflow-validate-") as scratch:
        path = Path(scratch) / "project"
        if target == "host":
            project = generate_project(graph, plan, path)
            binary = build_host(project.path, sanitize=True, opt_level="-O1")
            yield lambda codes: run_host(binary, codes, project.outputs)
            return
        project = generate_project(graph, plan, path, target=target, board=analysis.board)
        elf = build_cortexm(project.path, target)
        yield lambda codes: run_qemu(elf, target, codes, project.outputs).outputs


class LiteRT:
    """LiteRT's interpreter (reference kernels) over one model: its first output per sample."""

    def __init__(self, model: bytes | Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
            from ai_edge_litert.interpreter import OpResolverType
        except ImportError:
            raise McuflowError("LiteRT (ai_edge_litert) is not installed", LITERT_HINT) from None
        source = ({"model_content": model} if isinstance(model, bytes)
                  else {"model_path": str(model)})
        try:
            self.interpreter = LiteRTInterpreter(
                **source, num_threads=1,
                experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:
            raise McuflowError(f"LiteRT could not load the model: {error}",
                               "verify without labels, or on the reference only") from None

    def first_output(self, values: Sequence[np.ndarray], codes: Sequence[np.ndarray]
                     ) -> np.ndarray:
        """One sample's first output; a float input takes the values, an int8 one the codes."""
        details = self.interpreter.get_input_details()
        for detail, value, code in zip(details, values, codes, strict=True):
            given = value if np.dtype(detail["dtype"]).kind == "f" else code
            self.interpreter.set_tensor(detail["index"], given.astype(detail["dtype"])
                                        .reshape(detail["shape"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])


@dataclass
class _Tally:
    """What the chunks accumulate: predictions per column, mismatches, output error sums."""

    target: list[int] = field(default_factory=list)
    litert: list[int] = field(default_factory=list)
    float32: list[int] = field(default_factory=list)
    mismatches: int = 0
    signal: float = 0.0
    noise: float = 0.0
    max_abs_error: float = 0.0

    def add_error(self, graph: Graph, outputs: Sequence[np.ndarray],
                  expected: Sequence[np.ndarray]) -> None:
        """Sum one sample's dequantised outputs' error against the float model's."""
        for name, code, real in zip(graph.outputs, outputs, expected, strict=True):
            tensor = graph.tensor(name)
            got = (code.astype(np.float64) if tensor.quant is None
                   else dequantize(code, tensor.quant))
            diff = got.reshape(-1) - real.astype(np.float64).reshape(-1)
            self.signal += float(np.sum(real.astype(np.float64) ** 2))
            self.noise += float(np.sum(diff ** 2))
            self.max_abs_error = max(self.max_abs_error, float(np.max(np.abs(diff), initial=0)))


def validate(analysis: Analysis, data: Dataset, reference: Reference, target: str = "host",
             progress: Progress | None = None) -> Validation:
    """Run the C of `analysis` for `target` over every sample of `data`, in chunks.

    Each chunk of samples goes to one program run (one QEMU boot); every sample's outputs are
    compared to the bit with the reference interpreter's. With labels, the target's, LiteRT's
    and the float model's top-1 scores (arg-max of the first output); with a float model, the
    SQNR and largest error of the dequantised outputs.
    """
    graph = analysis.graph
    values = model_inputs(graph, data, reference.input_perms)
    count, classes = len(values[0]), math.prod(graph.tensor(graph.outputs[0]).shape)
    if data.labels is not None:
        check_labels(data.labels, count, classes)
    float_graph = _float_graph(graph, reference.float_model)
    litert = (LiteRT(reference.litert) if data.labels is not None
              and reference.litert is not None else None)
    checker = _Checker(graph, Interpreter(graph, analysis.plan.order_in(graph)), litert,
                       float_graph, count, progress)
    step = chunk_runs(graph)
    with c_program(analysis, target) as execute:
        for start in range(0, count, step):
            chunk = [x[start:start + step] for x in values]
            codes = [encode(x, graph.tensor(n)) for n, x in zip(graph.inputs, chunk, strict=True)]
            checker.check(execute(codes), chunk, codes)
    return _result(analysis, target, data, count, classes, checker.tally)


def _float_graph(graph: Graph, model: FloatModel | None) -> Graph | None:
    """The float model's graph, checked to take and give the int8 graph's shapes."""
    if model is None:
        return None
    float_graph = model.graph
    shapes = [graph.tensor(n).shape for n in (*graph.inputs, *graph.outputs)]
    theirs = [float_graph.tensor(n).shape for n in (*float_graph.inputs, *float_graph.outputs)]
    if shapes != theirs:
        raise McuflowError(f"the float model's inputs and outputs {theirs} differ from the int8 "
                           f"model's {shapes}", "pass the float model the int8 one was made from")
    return float_graph


@dataclass
class _Checker:
    """Weighs the C's outputs, sample by sample, against the reference, LiteRT and the float."""

    graph: Graph
    interpreter: Interpreter
    litert: LiteRT | None
    float_graph: Graph | None
    count: int
    progress: Progress | None
    tally: _Tally = field(default_factory=_Tally)
    done: int = 0

    def check(self, outputs: list[np.ndarray], values: list[np.ndarray],
              codes: list[np.ndarray]) -> None:
        """One chunk: its C outputs, the float values and int8 codes it was given."""
        for r in range(len(codes[0])):
            self._sample([output[r] for output in outputs], [v[r] for v in values],
                         [c[r] for c in codes])
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.count)

    def _sample(self, got: list[np.ndarray], values: list[np.ndarray],
                codes: list[np.ndarray]) -> None:
        tally = self.tally
        expected = self.interpreter.run(codes).outputs
        tally.mismatches += any(e.tobytes() != np.ascontiguousarray(g).tobytes()
                                for e, g in zip(expected, got, strict=True))
        tally.target.append(int(np.argmax(got[0])))
        if self.litert is not None:
            tally.litert.append(int(np.argmax(self.litert.first_output(values, codes))))
        if self.float_graph is not None:
            with np.errstate(all="ignore"):
                real = run_float(self.float_graph, values).outputs
            tally.float32.append(int(np.argmax(real[0])))
            tally.add_error(self.graph, got, real)


def _result(analysis: Analysis, target: str, data: Dataset, count: int, classes: int,
            tally: _Tally) -> Validation:
    labels = data.labels
    notes = []

    def scored(predictions: list[int]) -> Scores | None:
        if labels is None or not predictions:
            return None
        return scores(labels, np.asarray(predictions, np.int64), classes)

    error = None
    if tally.float32:
        error = OutputError(sqnr_db(tally.signal, tally.noise), tally.max_abs_error)
    elif labels is None:
        notes.append("no labels and no float model: only bit-exactness checked (pass --float "
                     "FLOAT_MODEL for the SQNR and largest error of the outputs)")
    machine = "host" if target == "host" else cortex_m_core(target).machine
    return Validation(analysis.graph.name, target, machine, count, tally.mismatches,
                      scored(tally.target), scored(tally.litert), scored(tally.float32), error,
                      tuple(notes))

