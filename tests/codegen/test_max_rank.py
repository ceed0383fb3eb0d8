"""The tensor rank limit is one fact: MCUFLOW_MAX_RANK in C, MAX_RANK in Python."""

from __future__ import annotations

import re

from mcuflow.codegen.project import kernel_source
from mcuflow.codegen.render import COMMON_HEADER
from mcuflow.ir.ops import MAX_RANK, rank_at_most_5


def test_c_macro_equals_python_constant() -> None:
    """The kernels' shape structs hold exactly the ranks the support check lets through."""
    found = re.findall(r"^#define MCUFLOW_MAX_RANK (\d+)$", kernel_source(COMMON_HEADER), re.M)
    assert found == [str(MAX_RANK)]


def test_user_message_states_the_limit() -> None:
    """The requirement `mcuflow ops` prints names the same number."""
    assert f"at most {MAX_RANK} dimensions" in (rank_at_most_5.__doc__ or "")
