"""Per-layer analysis, reports and plots."""
