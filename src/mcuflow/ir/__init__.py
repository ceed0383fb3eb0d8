"""Intermediate representation: graphs, tensors, operators and their attributes."""
