"""One entry point from (space, genes) to an executable Flax NNX network."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
from flax import nnx

from pnag_jax.errors import PnagError, UnknownSpaceError

#: Space name -> builder module (each exposes `build(...)` and `MIN_INPUT_SIZE`).
_BUILDERS = {
    "nb201": "pnag_jax.networks.nb201",
    "mbv3": "pnag_jax.networks.mbv3",
    "mbv3_r": "pnag_jax.networks.mbv3",
    "darts": "pnag_jax.networks.darts",
    "autoformer": "pnag_jax.networks.autoformer",
    "autoformer_base": "pnag_jax.networks.autoformer",
}


def builder(space_name: str) -> ModuleType:
  if space_name not in _BUILDERS:
    raise UnknownSpaceError(f"no network builder for space {space_name!r}; known: "
                            f"{', '.join(_BUILDERS)}")
  return importlib.import_module(_BUILDERS[space_name])


def format_suffices(space) -> bool:
  """Whether format validity alone makes a decoded graph a member network.

  It does where the adjacency is fixed and every format-valid op assignment decodes to
  itself (NB201's disconnected cells included: they are benchmark rows, and train to
  chance). Spaces that generate edges, and AutoFormer, whose ops also carry the depth,
  need strict validity: a format-valid AutoFormer sequence with a hole decodes to a
  config with a layer the graph does not have.
  """
  return space.fixed_adjacency and space.format_valid_decodes_exactly


def buildable(space, ops, adj):
  """bool[...]: the decoded graph maps to a network of the space (`format_suffices`)."""
  return space.format_valid(ops, adj) if format_suffices(space) else space.strict_valid(ops, adj)


def min_input_size(space_name: str, **kwargs) -> int:
  mod = builder(space_name)
  fn = getattr(mod, "min_input_size", None)
  return int(fn(**kwargs)) if callable(fn) else int(mod.MIN_INPUT_SIZE)


def build_network(space_name: str, genes, *, input_shape: tuple[int, int, int],
                  num_classes: int, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds the network of `genes` for NHWC inputs of `input_shape` and `num_classes`.

  Raises:
    PnagError: an input smaller than the network's minimum, or bad sizes.
  """
  h, w, c = input_shape
  if num_classes < 2:
    raise PnagError(f"num_classes must be >= 2, got {num_classes}")
  need = min_input_size(space_name, **kwargs)
  if min(h, w) < need or c < 1:
    raise PnagError(f"{space_name} networks need inputs of at least {need}x{need}x1, "
                    f"got {h}x{w}x{c}")
  genes = np.asarray(genes, np.int32)
  kwargs = dict(kwargs)
  if space_name in ("autoformer_base", "mbv3_r"):
    kwargs.setdefault("space", space_name)
  return builder(space_name).build(genes, input_shape=tuple(input_shape),
                                   num_classes=num_classes, rngs=rngs, **kwargs)
