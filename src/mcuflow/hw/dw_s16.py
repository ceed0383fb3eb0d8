"""The plane and work of mcuflow_dwconv_s16_dsp, the int16x8 DEPTHWISE_CONV_2D DSP kernel.

The kernel runs channel by channel over a zero-padded int16 plane of the input channel, two
outputs of a row at a time, one SMLAD per plane word and output: at stride 1 the pair's outputs
read the same words (3x3 kernels with the taps (w0, w1), (w1, w2) of the int8 kernel, other
widths with a weight pair per word and output), at stride 2 the second output one word later.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.hw.work import Work
from mcuflow.ir.enums import Activation, along
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.shapes import conv_padding

FORM_3X3, FORM_S1, FORM_S2, FORM_3X3_S2 = 0, 1, 2, 3  # MCUFLOW_DWS16_*
HEADER_WORDS = 6  # MCUFLOW_DWS16_HEADER


@dataclass(frozen=True)
class DwS16Plane:
    """The plane of one channel and how the kernel reads it.

    `rows` x `columns` halfwords (columns even, rows word-aligned), `copy_rows` x
    `copy_columns` input values at (`pad_top`, `pad_left`); `form` (FORM_*) and the weight
    words per kernel row (`row_words`).
    """

    rows: int
    columns: int
    copy_rows: int
    copy_columns: int
    pad_top: int
    pad_left: int
    form: int
    row_words: int

    @property
    def nbytes(self) -> int:
        """Bytes of the plane."""
        return 2 * self.rows * self.columns

    @property
    def words(self) -> int:
        """Plane words each kernel row of one output pair reads."""
        if self.form in (FORM_S2, FORM_3X3_S2):
            return self.row_words + 1
        return self.row_words // 2 if self.form == FORM_S1 else 2


def dw_s16_decline(op: Operator) -> str | None:
    """Why the kernel cannot run `op` (its attributes), or None."""
    attrs = op.attrs
    if attrs.depth_multiplier != 1:
        return f"depth multiplier {attrs.depth_multiplier}"
    if (attrs.dilation_h, attrs.dilation_w) != (1, 1):
        return f"dilation {attrs.dilation_h}x{attrs.dilation_w}"
    if attrs.stride_w not in (1, 2):
        return f"stride {attrs.stride_w} along the width"
    return None


def dw_s16_plane(graph: Graph, op: Operator) -> DwS16Plane | None:
    """The plane of int16 DEPTHWISE_CONV_2D `op`, None when the kernel does not apply."""
    if dw_s16_decline(op) is not None:
        return None
    attrs = op.attrs
    _, in_h, in_w, _ = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    k_h, k_w = graph.tensors[op.inputs[1]].shape[1:3]
    pad_top = conv_padding(in_h, k_h, attrs.stride_h, 1, out_h, along(attrs.padding, 0))
    pad_left = conv_padding(in_w, k_w, attrs.stride_w, 1, out_w, along(attrs.padding, 1))
    pairs = -(-out_w // 2)
    if attrs.stride_w == 2:
        form = FORM_3X3_S2 if (k_h, k_w) == (3, 3) else FORM_S2
        row_words = -(-k_w // 2)
        columns = 4 * pairs + 2 * row_words - 2
    elif (k_h, k_w) == (3, 3):
        form, row_words, columns = FORM_3X3, 2, 2 * pairs + 2
    else:
        form, row_words = FORM_S1, 2 * (k_w // 2 + 1)
        columns = 2 * pairs + row_words - 2
    rows = (out_h - 1) * attrs.stride_h + k_h
    return DwS16Plane(rows, columns, max(0, min(in_h, rows - pad_top)),
                      max(0, min(in_w, columns - pad_left)), pad_top, pad_left, form,
                      row_words)


def dw_s16_terms(graph: Graph, op: Operator) -> Work:
    """Work of mcuflow_dwconv_s16_dsp.

    Per call the plane cleared (`elements` slots); per channel (`channels`) its inside gathered
    (`rows` lines, `gathered` values); per output line (`loops`) its pairs of outputs (`blocks`)
    reading `words` plane words per kernel row (`macs`: one SMLAD per word and output), and
    `clamped` outputs of an activation narrower than int16.
    """
    plane = dw_s16_plane(graph, op)
    if plane is None:
        raise ValueError(f"'{op.name}' is not an int16 DSP depthwise step")
    n, _, _, c = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    k_h = graph.tensors[op.inputs[1]].shape[1]
    channels = n * c
    pairs = channels * out_h * -(-out_w // 2)
    narrow = getattr(op.attrs, "activation", Activation.NONE) is not Activation.NONE
    return Work(calls=1, elements=plane.rows * plane.columns, channels=channels,
                rows=channels * plane.copy_rows,
                gathered=channels * plane.copy_rows * plane.copy_columns,
                loops=channels * out_h, blocks=pairs, macs=pairs * k_h * 2 * plane.words,
                clamped=channels * out_h * out_w if narrow else 0)
