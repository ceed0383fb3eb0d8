"""Graph rewrites, one per file, each followed by the verifier."""
