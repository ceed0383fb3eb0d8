"""Boards, memory tiers and the cost model."""
