"""The int16x8 U-Net (tests/unet_models.py) compiled from its .tflite: bit-exact vs LiteRT.

TILE and RESIZE_NEAREST_NEIGHBOR upsampling and CONCATENATION skip connections on int16
activations, between int16x8 convolutions; the model goes through the TFLite reader, the
planner and the C code generator, and its C output equals LiteRT's reference kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuflow import api
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.graph import DType
from mcuflow.ir.ops import OpKind
from mcuflow.toolchain.host import build_host, run_host
from tests.support import litert_invoke
from tests.unet_models import images, unet_int16x8_graph

RUNS = 6


def model_file(directory: Path) -> Path:
    """The U-Net written as a .tflite file in `directory`."""
    path = directory / "unet_int16x8.tflite"
    path.write_bytes(write_tflite(unet_int16x8_graph()))
    return path


def samples(runs: int = RUNS) -> np.ndarray:
    """`runs` NHWC float32 images stacked, from a fixed seed."""
    return images(runs, seed=13).transpose(0, 2, 3, 1).copy()


def litert_outputs(model: Path, inputs: np.ndarray) -> np.ndarray:
    """LiteRT's (reference kernels) output of each sample, stacked."""
    return np.stack([litert_invoke(model, [sample[None]])[0] for sample in inputs])


def test_unet_moves_int16_values() -> None:
    graph = unet_int16x8_graph()
    moves = [op for op in graph.operators if op.kind in (
        OpKind.TILE, OpKind.RESIZE_NEAREST_NEIGHBOR, OpKind.CONCATENATION)]
    assert len(moves) == 4
    assert {graph.tensors[name].dtype for op in moves for name in (*op.inputs, *op.outputs)
            } == {DType.INT16}


def test_compiled_c_is_bit_exact_against_litert_on_the_host(tmp_path: Path) -> None:
    model = model_file(tmp_path)
    project = api.compile_model(model, tmp_path / "project", target="host")
    binary = build_host(project.path, sanitize=True)
    inputs = samples()
    got = run_host(binary, [inputs[:, None]], project.outputs)[0]
    want = litert_outputs(model, inputs)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert len({row.tobytes() for row in want}) == RUNS  # not a constant model
