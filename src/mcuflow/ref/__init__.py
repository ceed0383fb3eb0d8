"""Bit-exact numpy reference kernels and interpreter."""
