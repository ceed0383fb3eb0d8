"""Bring your own quantisation: models quantised by ONNX Runtime and PyTorch keep their scales.

Builds, offline and in this run: a CNN on scikit-learn's digits quantised by ONNX Runtime
(per-tensor int8 activations; per-channel with uint8 activations), the same CNN trained with
PT2E quantisation-aware training and exported to QDQ ONNX, the same CNN PT2E-quantised and saved
as a .pt2, and a 1-D CNN on a synthetic sensor task. For each it prints: top-1 accuracy of
mcuflow's int8 model beside ONNX Runtime's on the same file; the output difference to ONNX
Runtime's float definition in LSB beside ONNX Runtime's own int8 kernels'; bit-exactness of the
C on the host and on QEMU Cortex-M4; peak RAM and Cortex-M4 instructions beside the same float
network quantised by mcuflow's own PTQ on the same calibration samples.

Goals (issue 21): accuracy within 0.5 points of ONNX Runtime's; max difference <= ONNX
Runtime's own + 1 LSB and >= 95 % of elements within 1 LSB; bit-exact; RAM and instructions
<= 1.05x the PTQ version.

Run: .venv/bin/python bench/own_quantisation.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcuflow import api  # noqa: E402
from mcuflow.agreement import onnxruntime_agreement  # noqa: E402
from mcuflow.ref.interpreter import Interpreter  # noqa: E402
from tests import torch_models as tm  # noqa: E402

CALIBRATION = 200
TARGET = "cortex-m4"
EPOCHS = 8
QAT_EPOCHS = 2


@dataclass(frozen=True)
class Case:
    """One quantised model: its file, its ONNX bytes, the float network's file, the task."""

    name: str
    path: Path
    onnx: bytes
    float_path: Path
    calibration: Path
    task: tm.Task


def build_cases(directory: Path) -> list[Case]:
    digits, series = tm.digits_task(), tm.series_task()
    cnn = tm.train(tm.digits_cnn(), digits, EPOCHS)
    conv1d = tm.train(tm.series_cnn(), series, EPOCHS)
    cases = []
    for task, model in ((digits, cnn), (series, conv1d)):
        folder = directory / task.name
        folder.mkdir()
        float_path, calibration = folder / "float.onnx", folder / "calibration.npy"
        float_path.write_bytes(tm.float_onnx(model, task))
        np.save(calibration, task.train_x[:CALIBRATION])
        common = (float_path, calibration, task)
        if task is series:
            cases.append(_ort_case("1-D CNN, ORT per-channel int8", folder, model, task, True,
                                   QuantType.QInt8, common))
            continue
        cases.append(_ort_case("CNN, ORT per-tensor int8", folder, model, task, False,
                               QuantType.QInt8, common))
        cases.append(_ort_case("CNN, ORT per-channel uint8", folder, model, task, True,
                               QuantType.QUInt8, common))
        qat = tm.pt2e_quantized(tm.train(tm.digits_cnn(), digits, EPOCHS), task,
                                task.train_x[:CALIBRATION], qat_epochs=QAT_EPOCHS)
        qat_path = folder / "qat.onnx"
        qat_path.write_bytes(tm.pt2e_onnx(qat))
        cases.append(Case("CNN, PyTorch QAT -> QDQ ONNX", qat_path, qat_path.read_bytes(),
                          *common))
        ptq = tm.pt2e_quantized(model, task, task.train_x[:CALIBRATION])
        pt2_path = folder / "pt2e.pt2"
        torch.export.save(ptq, pt2_path)
        cases.append(Case("CNN, PT2E .pt2", pt2_path, tm.pt2e_onnx(ptq), *common))
    return cases


def _ort_case(name: str, folder: Path, model: torch.nn.Module, task: tm.Task, per_channel: bool,
              activations: QuantType, common: tuple[Path, Path, tm.Task]) -> Case:
    data = tm.onnxruntime_qdq(tm.float_onnx(model, task), task.train_x[:CALIBRATION],
                              per_channel, activations, folder)
    path = folder / f"{name.split(', ')[1].replace(' ', '_')}.onnx"
    path.write_bytes(data)
    return Case(name, path, data, *common)


@dataclass(frozen=True)
class Row:
    """One case's figures."""

    name: str
    ours: float
    onnxruntime: float
    onnxruntime_float: float
    max_lsb: int
    within_1lsb: float
    onnxruntime_max_lsb: int
    bit_exact: bool
    ram: int
    ptq_ram: int
    instructions: int
    ptq_instructions: int

    def goals(self) -> dict[str, bool]:
        return {
            "accuracy": abs(self.ours - self.onnxruntime) <= 0.005,
            "lsb": self.max_lsb <= self.onnxruntime_max_lsb + 1 and self.within_1lsb >= 0.95,
            "bit-exact": self.bit_exact,
            "ram": self.ram <= 1.05 * self.ptq_ram,
            "instructions": self.instructions <= 1.05 * self.ptq_instructions,
        }


def measure(case: Case) -> Row:
    quantized = api.load_quantized(case.path)
    samples = [[x[None]] for x in case.task.test_x]
    interpreter = Interpreter(quantized.graph)
    ours = [int(np.argmax(interpreter.run([quantized.quantize_input(x)]).outputs[0]))
            for (x,) in samples]
    agreement = onnxruntime_agreement(case.onnx, quantized, samples)
    host = api.verify_model(case.path, runs=5)
    target = api.verify_cortexm_model(case.path, TARGET, runs=3)
    ptq = api.verify_cortexm_model(case.float_path, TARGET, runs=3,
                                   quantize=api.QuantizeOptions(case.calibration))
    return Row(case.name, _accuracy(ours, case.task),
               _accuracy(_ort_predictions(case.onnx, samples, fused=True), case.task),
               _accuracy(_ort_predictions(case.onnx, samples, fused=False), case.task),
               agreement.mcuflow.max_lsb, agreement.mcuflow.within_1lsb,
               agreement.onnxruntime_int8.max_lsb, host.bit_exact and target.bit_exact,
               target.result.ram_bytes, ptq.result.ram_bytes, target.result.instructions,
               ptq.result.instructions)


def _ort_predictions(model: bytes, samples: list[list[np.ndarray]], fused: bool) -> list[int]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fused
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [int(np.argmax(session.run(None, {name: x})[0])) for (x,) in samples]


def _accuracy(predictions: list[int], task: tm.Task) -> float:
    return float(np.mean(np.asarray(predictions) == task.test_y))


def main() -> None:
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [measure(case) for case in build_cases(Path(scratch))]
    print(f"Bring your own quantisation: {TARGET} on QEMU, ONNX Runtime {ort.__version__}, "
          f"torch {torch.__version__}")
    header = (f"{'model':31} {'acc':>6} {'ORT':>6} {'ORTfp':>6} {'maxLSB':>6} {'<=1LSB':>7} "
              f"{'ORT int8 LSB':>12} {'exact':>5} {'RAM':>7} {'PTQ RAM':>7} {'instr':>9} "
              f"{'PTQ instr':>9}  goals")
    print(header)
    for row in rows:
        met = row.goals()
        failed = [name for name, ok in met.items() if not ok]
        print(f"{row.name:31} {row.ours:6.1%} {row.onnxruntime:6.1%} {row.onnxruntime_float:6.1%}"
              f" {row.max_lsb:6d} {row.within_1lsb:7.1%} {row.onnxruntime_max_lsb:12d} "
              f"{'yes' if row.bit_exact else 'NO':>5} {row.ram:7,} {row.ptq_ram:7,} "
              f"{row.instructions:9,} {row.ptq_instructions:9,}  "
              f"{'all met' if not failed else 'MISSED: ' + ', '.join(failed)}")
    print("acc: mcuflow int8 (== the C); ORT: ONNX Runtime's int8 kernels on the same file; "
          "ORTfp: its float definition (optimisations off). maxLSB, <=1LSB: mcuflow against "
          "ORTfp; ORT int8 LSB: ONNX Runtime's int8 kernels against ORTfp. RAM: data+bss+stack "
          "of the Cortex-M4 ELF; PTQ: the float network quantised by mcuflow on the same "
          f"{CALIBRATION} calibration samples.")


if __name__ == "__main__":
    main()
