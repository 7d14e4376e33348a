"""Benchmark tables read from a user-given data directory (never shipped)."""

from pnag_jax.data.nb201 import ENV_VAR, NB201Data, resolve_data_dir

__all__ = ["ENV_VAR", "NB201Data", "resolve_data_dir"]
