"""Thin layer over jraph: the one place that knows how graphs are batched."""

from pnag_jax.graphs.batching import dense_to_graphs_tuple, zero_out_padding

__all__ = ["dense_to_graphs_tuple", "zero_out_padding"]
