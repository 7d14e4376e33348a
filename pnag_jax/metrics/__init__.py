"""Bulk metrics over generated architectures."""

from pnag_jax.metrics.vun import first_occurrence, in_reference, vun

__all__ = ["first_occurrence", "in_reference", "vun"]
