"""The fold of SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND: exact where it folds, else left.

The oracle is LiteRT running the unfolded model as written.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.ref.interpreter import Interpreter
from tests.support import litert_interpreter, litert_invoke, random_input

Chain = Callable[[GraphBuilder, str], str]


def _same_2d(b: GraphBuilder, x: str) -> str:
    """Conv2D(3x3, dilation 2, SAME) on 7 x 6: pads (2, 3), (2, 2), crops (0, 1), (0, 0)."""
    y = b.conv2d(b.space_to_batch(x, (2, 2), ((2, 3), (2, 2))), 4, (3, 3), padding=Padding.VALID)
    return b.batch_to_space(y, (2, 2), ((0, 1), (0, 0)))


def _odd_2d(b: GraphBuilder, x: str) -> str:
    """Paddings SAME would not choose: folded as a PAD and a VALID conv."""
    y = b.depthwise_conv2d(b.space_to_batch(x, (2, 2), ((1, 2), (3, 1))), (3, 3),
                           depth_multiplier=2, padding=Padding.VALID)
    return b.batch_to_space(y, (2, 2), ((0, 0), (1, 1)))


def _valid_2d(b: GraphBuilder, x: str) -> str:
    y = b.conv2d(b.space_to_batch(x, (3, 3), ((0, 2), (0, 0))), 2, (2, 2), padding=Padding.VALID)
    return b.batch_to_space(y, (3, 3), ((0, 2), (0, 0)))


def _one_d(b: GraphBuilder, x: str) -> str:
    """The 3-D form: SPACE_TO_BATCH_ND of the signal, EXPAND_DIMS, CONV_2D, SQUEEZE, back."""
    signal = b.reshape(x, (1, 21, 6))
    spread = b.expand_dims(b.space_to_batch(signal, (4,), ((4, 7),)), 1)
    y = b.squeeze(b.conv2d(spread, 5, (1, 3), padding=Padding.VALID), (1,))
    return b.batch_to_space(y, (4,), ((0, 3),))


def _one_d_reshape(b: GraphBuilder, x: str) -> str:
    """As _one_d with RESHAPEs for the views, and paddings SAME would not choose (a PAD)."""
    signal = b.reshape(x, (1, 21, 6))
    spread = b.reshape(b.space_to_batch(signal, (2,), ((2, 1),)), (2, 1, 12, 6))
    y = b.conv2d(spread, 5, (1, 3), padding=Padding.VALID, activation=Activation.RELU)
    return b.batch_to_space(b.reshape(y, (2, 10, 5)), (2,), ((1, 0),))


def _swapping(b: GraphBuilder, x: str) -> str:
    """A RESHAPE that moves values between the spatial axes: no fold."""
    spread = b.reshape(b.space_to_batch(x, (2, 2), ((1, 0), (0, 0))), (4, 3, 4, 3))
    y = b.reshape(b.conv2d(spread, 3, (1, 1), padding=Padding.VALID), (4, 4, 3, 3))
    return b.batch_to_space(y, (2, 2), ((1, 0), (0, 0)))


def _cropping(b: GraphBuilder, x: str) -> str:
    """Crops larger than the paddings: the folded conv would need negative padding."""
    y = b.conv2d(b.space_to_batch(x, (2, 2), ((0, 1), (0, 0))), 3, (3, 3), padding=Padding.VALID)
    return b.batch_to_space(y, (2, 2), ((1, 0), (0, 0)))


def _strided(b: GraphBuilder, x: str) -> str:
    y = b.conv2d(b.space_to_batch(x, (2, 2), ((1, 0), (0, 0))), 3, (1, 1), stride=2,
                 padding=Padding.VALID)
    return b.batch_to_space(y, (2, 2), ((0, 0), (0, 0)))


def _other_block(b: GraphBuilder, x: str) -> str:
    y = b.conv2d(b.space_to_batch(x, (2, 2), ((1, 0), (2, 2))), 3, (1, 1), padding=Padding.VALID)
    return b.batch_to_space(y, (4, 1), ((0, 0), (0, 0)))


def _also_read(b: GraphBuilder, x: str) -> str:
    """The SPACE_TO_BATCH_ND output is read by another op too."""
    spread = b.space_to_batch(x, (2, 2), ((1, 0), (2, 2)))
    y = b.conv2d(spread, 3, (1, 1), padding=Padding.VALID)
    b.output(b.relu(spread))
    return b.batch_to_space(y, (2, 2), ((0, 0), (0, 0)))


# (chain, folded, padding of the folded conv, PAD inserted)
CASES = [
    (_same_2d, True, Padding.SAME, False),
    (_odd_2d, True, Padding.VALID, True),
    (_valid_2d, True, Padding.VALID, False),
    (_one_d, True, Padding.SAME, False),
    (_one_d_reshape, True, Padding.VALID, True),
    (_swapping, False, None, False),
    (_cropping, False, None, False),
    (_strided, False, None, False),
    (_other_block, False, None, False),
    (_also_read, False, None, False),
]


def _graph(chain: Chain) -> Graph:
    b = GraphBuilder(chain.__name__, seed=4)
    x = b.input((1, 7, 6, 3), 0.05, -7)
    return b.output(chain(b, x)).build()


@pytest.mark.parametrize(("chain", "folds", "padding", "padded"), CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_fold_is_exact_or_left_alone(chain: Chain, folds: bool, padding: Padding | None,
                                     padded: bool) -> None:
    graph = _graph(chain)
    folded = run_passes(graph, INT8_PASSES)
    kinds = [op.kind for op in folded.operators]
    assert (OpKind.SPACE_TO_BATCH_ND not in kinds) is folds
    assert (OpKind.BATCH_TO_SPACE_ND not in kinds) is folds
    assert (OpKind.PAD in kinds) is padded
    if folds:
        conv = next(op for op in folded.operators
                    if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D))
        assert conv.attrs.padding is padding and max(conv.attrs.dilation_h,
                                                     conv.attrs.dilation_w) > 1
    litert = litert_interpreter(write_tflite(graph))
    ours = Interpreter(folded)
    for seed in range(4):
        x = random_input(graph.tensors[graph.inputs[0]].shape, np.int8,
                         np.random.default_rng(seed))
        for got, want in zip(ours.run([x]).outputs, litert_invoke(litert, [x]), strict=True):
            np.testing.assert_array_equal(got, want)
