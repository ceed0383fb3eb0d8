"""`verify --data --target cortex-m4`: the C on QEMU over a labelled test set, one boot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.test_cli import invoke
from tests.unit.test_validation import Digits, _assert_scored, _litert_predictions, digits

__all__ = ["digits"]  # the module-scoped fixture, shared with the host tests

SAMPLES = 20


def test_labelled_data_on_cortex_m4_matches_litert(capsys: pytest.CaptureFixture[str],
                                                   digits: Digits) -> None:
    data_file = digits.npz("m4.npz", x=digits.nhwc[:SAMPLES], y=digits.test_y[:SAMPLES])
    code, out, err = invoke(capsys, "verify", digits.int8, "--data", data_file, "--target",
                            "cortex-m4", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["target"] == "cortex-m4" and data["machine"] == "mps2-an386"
    assert data["samples"] == SAMPLES and data["bit_exact"]
    litert = _litert_predictions(digits)[:SAMPLES]
    _assert_scored(data, digits.test_y[:SAMPLES], np.asarray(litert))
