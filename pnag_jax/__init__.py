"""pnag_jax: Progressive Neural Architecture Generation (PNAG) in JAX."""

__version__ = "0.1.0"
