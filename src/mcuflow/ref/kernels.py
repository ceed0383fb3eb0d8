"""Importing this module imports every op module of `mcuflow.ref`: its kernels and constraints."""

import importlib
import pkgutil

import mcuflow.ref

RUNNERS = frozenset({"common", "registry", "kernels", "interpreter", "float_kernels"})
"""The modules of `mcuflow.ref` that run or support kernels; every other one is an op's."""

for _module in pkgutil.iter_modules(mcuflow.ref.__path__):
    if _module.name not in RUNNERS:
        importlib.import_module(f"{mcuflow.ref.__name__}.{_module.name}")
