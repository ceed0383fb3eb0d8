"""Memory planning: liveness, operator order, in-place execution, arena placement."""
