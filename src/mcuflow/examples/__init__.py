"""The bundled example: a small keyword-spotting DS-CNN built by mcuflow's own GraphBuilder."""

from __future__ import annotations

from pathlib import Path

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph

DEMO_MODEL = Path(__file__).with_name("demo_kws.tflite")


def build_demo_graph() -> Graph:
    """A DS-CNN for 49x10 MFCC features and 12 keywords, with deterministic random weights."""
    b = GraphBuilder("demo_kws", seed=2026)
    x = b.input((1, 49, 10, 1), scale=0.58, zero_point=83)
    x = b.conv2d(x, 32, kernel=(10, 4), stride=2, activation=Activation.RELU)
    for _ in range(2):
        x = b.depthwise_conv2d(x, activation=Activation.RELU)
        x = b.conv2d(x, 32, kernel=(1, 1), activation=Activation.RELU)
    x = b.max_pool2d(x, size=2, stride=2, padding=Padding.SAME)
    x = b.mean(x, axes=(1, 2), keep_dims=True)
    x = b.reshape(x, (1, 32))
    x = b.fully_connected(x, 12)
    x = b.softmax(x)
    return b.output(x).build()
