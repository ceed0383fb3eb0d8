"""Architecture search under memory limits."""
