"""Fuzzing of the model readers and the analyse/run pipeline, and its regression corpus."""
