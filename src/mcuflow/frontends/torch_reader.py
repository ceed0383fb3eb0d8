"""PyTorch models (.pt2 files, ExportedPrograms, nn.Modules) as ONNX, through torch.export.

A float graph stays float; a PT2E-quantised one (torchao's convert_pt2e, QAT included) keeps its
quantize_per_tensor / dequantize_per_tensor / dequantize_per_channel nodes, which PyTorch's ONNX
exporter writes as QuantizeLinear / DequantizeLinear: the ONNX reader then keeps their
parameters. torch is an optional extra; without it a PyTorch model is one clear error.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError

TORCH_SUFFIX = ".pt2"
_EXTRA_HINT = "install PyTorch with mcuflow's torch extra: pip install 'mcuflow[torch]'"
_QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript")


def is_torch_model(model: object) -> bool:
    """True for an nn.Module, an ExportedProgram, or a path to a .pt2 file."""
    if isinstance(model, str | Path):
        return Path(model).suffix.lower() == TORCH_SUFFIX
    return any(base.__module__.startswith("torch.") for base in type(model).__mro__)


def torch_to_onnx(model: object, example_inputs: tuple[Any, ...] | None = None) -> bytes:
    """The model as an ONNX file's bytes (opset of PyTorch's exporter).

    `model` is a .pt2 path (torch.export.save), an ExportedProgram, or an nn.Module with
    `example_inputs` (exported with torch.export first).
    """
    torch = _torch()
    program = _exported(torch, model, example_inputs)
    try:
        with _quiet():
            exported = torch.onnx.export(program, dynamo=True, verbose=False)
    except Exception as error:  # the exporter raises many types for graphs it cannot express
        raise UnsupportedModelError(f"PyTorch could not export the program to ONNX: "
                                    f"{_first_line(error)}",
                                    "export a graph of standard aten ops (conv, linear, pooling, "
                                    "activations, add, mul, view)") from None
    return exported.model_proto.SerializeToString()


def _torch() -> Any:
    try:
        torch = importlib.import_module("torch")
        importlib.import_module("torch.ao.quantization.fx._decomposed")  # PT2E's Q/DQ ops
        importlib.import_module("onnxscript")
    except ImportError as error:
        raise McuflowError(f"reading a PyTorch model needs {error.name}, which is not "
                           "installed", _EXTRA_HINT) from None
    return torch


def _exported(torch: Any, model: object, example_inputs: tuple[Any, ...] | None) -> Any:
    if isinstance(model, str | Path):
        return _load(torch, Path(model))
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise McuflowError("an nn.Module needs example inputs to be exported",
                               "pass example_inputs=(torch.randn(1, C, H, W),)")
        if not isinstance(model, torch.fx.GraphModule):  # an exported module refuses eval()
            model = model.eval()
        with _quiet():
            return torch.export.export(model, tuple(example_inputs))
    raise McuflowError(f"cannot read a {type(model).__name__} as a PyTorch model",
                       "pass a .pt2 path, an ExportedProgram or an nn.Module")


def _load(torch: Any, path: Path) -> Any:
    if not path.is_file():
        raise McuflowError(f"no such model file: {path}", "check the path")
    try:
        with _quiet():
            return torch.export.load(str(path))
    except Exception as error:  # a corrupt archive raises anything from zipfile to serde
        raise ModelFormatError(f"'{path}' is not a program saved by torch.export.save: "
                               f"{_first_line(error)}",
                               "save it with torch.export.save(torch.export.export(model, "
                               "inputs), 'model.pt2')") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyTorch's exporter warns and logs on stdout/stderr; the CLI's output is its own."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:240]
