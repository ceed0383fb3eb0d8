"""Models as TensorFlow's converter writes them: built with Keras, converted, verified by mcuflow.

The test-suite builds its models with mcuflow's own TFLite writer. This benchmark checks the
same operators as a user's converter writes them (a model mcuflow did not write): a dilated
Conv1D IMU classifier, a U-Net with Conv2DTranspose and UpSampling2D, an LSTM keyword spotter,
an int16x8 CNN, a uint8-I/O CNN, and one small model per other operator. Each is fully
integer-quantised by the converter (random representative data) and handed to
`mcuflow verify --json` on the host and on QEMU Cortex-M4; the table says whether mcuflow
accepted it and whether the C is bit-exact against LiteRT.

TensorFlow is not an mcuflow dependency: run the builder under a Python that has it
(tensorflow-cpu and tf_keras; checked with 2.19).

Run: .venv/bin/python bench/converter_models.py --tf-python /path/to/python-with-tensorflow
     [--target cortex-m4 --board nucleo-f429zi] [--json] [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

SEED = 7
CALIBRATION_SAMPLES = 32
MODEL_NAMES = ("imu_dilated_conv1d", "unet_transpose_upsampling", "lstm_kws",
               "bidirectional_lstm_kws", "stacked_lstm_kws", "cnn_int16x8",
               "cnn_uint8_io", "transpose", "strided_slice", "split", "gather", "pack_unpack",
               "tile", "depth_to_space", "space_to_depth", "resize_bilinear", "resize_nearest",
               "abs", "prelu", "squared_difference", "sum", "l2_normalization", "log_softmax",
               "reduce_max", "argmax",
               "unet_int16x8")
"""Every model, in the order of the table (the builder's keys)."""
REASON_CHARS = 300
"""How much of a refusal's message the table's footnote keeps."""
LEGACY_KERAS = ("lstm_kws", "bidirectional_lstm_kws", "stacked_lstm_kws")
"""Models built with Keras 2 (the tf_keras package) instead of Keras 3."""


# --------------------------------------------------------------------------- building (TF side)


def _keras_models() -> dict[str, tuple[Callable[[], object], str]]:
    """Name -> (Keras model builder, scheme: int8 | int16x8 | uint8_io)."""
    import keras
    import tensorflow as tf
    from keras import layers

    def sequential(shape: tuple[int, ...], *stack: object) -> Callable[[], object]:
        return lambda: keras.Sequential([keras.Input(shape, batch_size=1), *stack])

    def functional(shape: tuple[int, ...], body: Callable[[object], object]
                   ) -> Callable[[], object]:
        def build() -> object:
            x = keras.Input(shape, batch_size=1)
            return keras.Model(x, body(x))

        return build

    def unet(x: object) -> object:
        e1 = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        e2 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(e1)
        e3 = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(e2)
        d2 = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(e3)
        d2 = layers.Conv2D(16, 3, padding="same", activation="relu")(
            layers.Concatenate()([d2, e2]))
        d1 = layers.UpSampling2D(2)(d2)
        d1 = layers.Conv2D(8, 3, padding="same", activation="relu")(
            layers.Concatenate()([d1, e1]))
        return layers.Conv2D(3, 1)(d1)

    def unet16(x: object) -> object:
        """A U-Net for the int16x8 scheme: tf.repeat and UpSampling2D upsampling, skips."""
        e1 = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        e2 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(e1)
        e3 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(e2)
        d2 = lam(lambda t: tf.repeat(tf.repeat(t, 2, axis=1), 2, axis=2))(e3)
        d2 = layers.Conv2D(16, 3, padding="same", activation="relu")(
            layers.Concatenate()([d2, e2]))
        d1 = layers.UpSampling2D(2)(layers.ZeroPadding2D(1)(d2))
        d1 = layers.Conv2D(8, 3, padding="same", activation="relu")(
            layers.Concatenate()([layers.Cropping2D(2)(d1), e1]))
        return layers.Conv2D(3, 1)(d1)

    def imu(x: object) -> object:
        y = layers.Conv1D(16, 3, padding="same", activation="relu")(x)
        y = layers.Conv1D(16, 3, padding="same", dilation_rate=2, activation="relu")(y)
        y = layers.Conv1D(24, 3, padding="valid", dilation_rate=4, activation="relu")(y)
        y = layers.MaxPooling1D(2)(y)
        y = layers.GlobalMaxPooling1D()(y)
        return layers.Dense(6, activation="softmax")(layers.Dense(16, activation="relu")(y))

    def cnn(x: object) -> object:
        y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        z = layers.DepthwiseConv2D(3, padding="same", activation="relu")(y)
        y = layers.Add()([y, layers.Conv2D(8, 1)(z)])
        y = layers.GlobalAveragePooling2D()(y)
        return layers.Dense(4, activation="softmax")(y)

    def lstm_kws() -> object:
        """An LSTM as Keras 2 builds it (tf.keras with TF_USE_LEGACY_KERAS=1).

        The converter fuses it into UNIDIRECTIONAL_SEQUENCE_LSTM; Keras 3's LSTM crashes TF
        2.19's full-integer converter.
        """
        legacy = tf.keras
        return legacy.Sequential([legacy.Input((49, 10), batch_size=1), legacy.layers.LSTM(32),
                                  legacy.layers.Dense(12, activation="softmax")])

    def bidirectional_lstm_kws() -> object:
        """Bidirectional(LSTM): REVERSE_V2 around the backward LSTM (Keras 2, as lstm_kws)."""
        legacy = tf.keras
        return legacy.Sequential([
            legacy.Input((20, 8), batch_size=1),
            legacy.layers.Bidirectional(legacy.layers.LSTM(8)),
            legacy.layers.Dense(3)])

    def stacked_lstm_kws() -> object:
        """Two LSTMs, the first returning its sequence (Keras 2, as lstm_kws)."""
        legacy = tf.keras
        return legacy.Sequential([
            legacy.Input((20, 8), batch_size=1),
            legacy.layers.LSTM(16, return_sequences=True), legacy.layers.LSTM(8),
            legacy.layers.Dense(3)])

    def lam(function: Callable[[object], object]) -> object:
        return layers.Lambda(function)

    image = (12, 12, 8)
    return {
        "imu_dilated_conv1d": (functional((128, 6), imu), "int8"),
        "unet_transpose_upsampling": (functional((32, 32, 3), unet), "int8"),
        "lstm_kws": (lstm_kws, "int8"),
        "bidirectional_lstm_kws": (bidirectional_lstm_kws, "int8"),
        "stacked_lstm_kws": (stacked_lstm_kws, "int8"),
        "cnn_int16x8": (functional((16, 16, 3), cnn), "int16x8"),
        "cnn_uint8_io": (functional((16, 16, 3), cnn), "uint8_io"),
        "transpose": (sequential(image, lam(lambda t: tf.transpose(t, [0, 2, 1, 3]))), "int8"),
        "strided_slice": (sequential(image, lam(lambda t: t[:, 1:11:2, ::3, 2:6])), "int8"),
        "split": (sequential(image, lam(lambda t: tf.add(*tf.split(t, 2, axis=3)))), "int8"),
        "gather": (sequential(image, lam(lambda t: tf.gather(t, [3, 0, 5], axis=3))), "int8"),
        "pack_unpack": (sequential(image, lam(lambda t: tf.stack(tf.unstack(t, axis=1)[::2],
                                                                 axis=2))), "int8"),
        "tile": (sequential(image, lam(lambda t: tf.tile(t, [1, 2, 1, 3]))), "int8"),
        "depth_to_space": (sequential(image, lam(lambda t: tf.nn.depth_to_space(t, 2))), "int8"),
        "space_to_depth": (sequential(image, lam(lambda t: tf.nn.space_to_depth(t, 2))), "int8"),
        "resize_bilinear": (sequential(image, layers.Resizing(20, 18, "bilinear")), "int8"),
        "resize_nearest": (sequential(image, layers.Resizing(24, 24, "nearest")), "int8"),
        "abs": (sequential(image, lam(tf.abs)), "int8"),
        "prelu": (sequential(image, layers.PReLU(shared_axes=[1, 2])), "int8"),
        "squared_difference": (functional(image, lambda t: lam(
            lambda pair: tf.math.squared_difference(*pair))([t, layers.Conv2D(8, 1)(t)])),
                               "int8"),
        "sum": (sequential(image, lam(lambda t: tf.reduce_sum(t, axis=[1, 2]))), "int8"),
        "l2_normalization": (sequential(image, lam(lambda t: tf.math.l2_normalize(t, -1))),
                             "int8"),
        "log_softmax": (sequential((10,), layers.Dense(10), lam(tf.nn.log_softmax)), "int8"),
        "reduce_max": (sequential(image, lam(lambda t: tf.reduce_max(t, axis=[1, 2]))), "int8"),
        "argmax": (sequential((10,), layers.Dense(10), lam(lambda t: tf.argmax(t, -1))), "int8"),
        "unet_int16x8": (functional((32, 32, 3), unet16), "int16x8"),
    }


def build_models(directory: Path, names: list[str]) -> None:
    """Convert every chosen model to `directory`/NAME.tflite (runs under TensorFlow)."""
    import numpy as np
    import tensorflow as tf

    tf.random.set_seed(SEED)
    rng = np.random.default_rng(SEED)
    for name, (make, scheme) in _keras_models().items():
        if names and name not in names:
            continue
        model = make()
        shape = tuple(model.inputs[0].shape[1:])

        def samples(shape: tuple[int, ...] = shape) -> object:
            for _ in range(CALIBRATION_SAMPLES):
                yield [rng.uniform(-1, 1, (1, *shape)).astype(np.float32)]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        if scheme == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"int8": tf.int8, "int16x8": tf.int16, "uint8_io": tf.uint8}[scheme]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        (directory / f"{name}.tflite").write_bytes(converter.convert())


# --------------------------------------------------------------------------- verifying


@dataclass
class Row:
    model: str
    ops: str
    host: str
    cortex_m: str


def _verify(model: Path, extra: list[str]) -> str:
    command = [sys.executable, "-m", "mcuflow", "verify", str(model), "--json", *extra]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return "refused: " + (lines[-1] if lines else f"exit {result.returncode}")
    data = json.loads(result.stdout)
    return "bit-exact" if data.get("bit_exact") else f"MISMATCH {data}"


def _ops(model: Path) -> str:
    """The builtin operators a .tflite file uses."""
    import tflite

    from mcuflow.frontends.tflite_schema import builtin_name

    flat = tflite.Model.GetRootAsModel(model.read_bytes(), 0)
    codes = (flat.OperatorCodes(i) for i in range(flat.OperatorCodesLength()))
    return " ".join(sorted(builtin_name(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()))
                           for c in codes))


def _short(verdict: str) -> str:
    """'bit-exact', 'refused' or 'MISMATCH' (the reasons are printed below the table)."""
    return verdict.split(":")[0].split(" ")[0]


def _row(name: str, directory: Path, args: argparse.Namespace) -> Row:
    """Convert model `name` in its own TensorFlow process (the converter may crash), verify."""
    built = subprocess.run([args.tf_python, __file__, "--build", str(directory), name],
                           capture_output=True, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                "TF_USE_LEGACY_KERAS": "1" if name in LEGACY_KERAS else "0"})
    path = directory / f"{name}.tflite"
    if built.returncode != 0 or not path.is_file():
        failure = f"TensorFlow's converter failed (exit {built.returncode})"
        return Row(name, "-", failure, failure)
    return Row(name, _ops(path), _verify(path, []),
               _verify(path, ["--target", args.target, "--board", args.board]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--tf-python", help="a Python with tensorflow (builds the models)")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--board", default="nucleo-f429zi")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.build is not None:
        build_models(args.build, args.models)
        return
    if not args.tf_python:
        sys.exit("bench/converter_models.py: pass --tf-python, a Python with tensorflow")
    names = args.models or list(MODEL_NAMES)
    with tempfile.TemporaryDirectory(prefix="mcuflow-converted-") as scratch:
        directory = Path(scratch)
        rows = [_row(name, directory, args) for name in names]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    print(f"{'model':27}{'host':12}{args.target:12}ops")
    for row in rows:
        print(f"{row.model:27}{_short(row.host):12}{_short(row.cortex_m):12}{row.ops}")
    for row in rows:
        if row.host != "bit-exact":
            print(f"{row.model}: {row.host[:REASON_CHARS]}")
    exact = sum(r.host == r.cortex_m == "bit-exact" for r in rows)
    print(f"{exact} of {len(rows)} converter-written models bit-exact on the host and "
          f"{args.target}")


if __name__ == "__main__":
    main()
