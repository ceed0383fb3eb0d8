"""Quantisation: fixed-point arithmetic, calibration and weight schemes."""
