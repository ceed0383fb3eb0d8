"""Memory planning: liveness, operator order, in-place execution, arena placement."""

from mcuflow.memory.check import check_plan
from mcuflow.memory.plan import Buffer, InPlace, Plan, PlanError, Step, Tier
from mcuflow.memory.planner import plan_memory
from mcuflow.memory.scratch import scratch_bytes

__all__ = [
    "Buffer", "InPlace", "Plan", "PlanError", "Step", "Tier", "check_plan", "plan_memory",
    "scratch_bytes",
]
