"""Regenerate the bundled example model: `python -m mcuflow.examples`."""

from mcuflow.examples import DEMO_MODEL, build_demo_graph
from mcuflow.frontends.tflite_writer import write_tflite

DEMO_MODEL.write_bytes(write_tflite(build_demo_graph()))
print(f"wrote {DEMO_MODEL}")
