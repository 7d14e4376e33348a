"""Executable Flax NNX networks for the search spaces."""
