"""Search spaces behind one interface; see `base.SearchSpace`.

Spaces are looked up by name and imported lazily, so `pnag spaces` does not pay for
building every space's tables.
"""

import functools
import importlib

from pnag_jax.errors import UnknownSpaceError
from pnag_jax.spaces.base import SearchSpace

# name -> (module, factory attribute)
_REGISTRY = {
    "nb201": ("pnag_jax.spaces.nb201", "NB201Space"),
    "mbv3": ("pnag_jax.spaces.mbv3", "MBV3Space"),
    "mbv3_r": ("pnag_jax.spaces.mbv3", "MBV3ResolutionSpace"),
    "darts": ("pnag_jax.spaces.darts", "DartsSpace"),
    "autoformer": ("pnag_jax.spaces.autoformer", "AutoFormerTinySpace"),
    "autoformer_base": ("pnag_jax.spaces.autoformer", "AutoFormerBaseSpace"),
}

SPACE_NAMES = tuple(_REGISTRY)


@functools.lru_cache(maxsize=None)
def get_space(name: str) -> SearchSpace:
  """Returns the (cached) space registered under `name`.

  Raises:
    UnknownSpaceError: `name` is not registered; the message lists the known spaces.
  """
  if name not in _REGISTRY:
    raise UnknownSpaceError(
        f"unknown search space {name!r}; known spaces: {', '.join(SPACE_NAMES)}")
  module, attr = _REGISTRY[name]
  return getattr(importlib.import_module(module), attr)()


def as_space(space: "SearchSpace | str") -> SearchSpace:
  """`space` itself, or the registered space of that name."""
  return get_space(space) if isinstance(space, str) else space


__all__ = ["SPACE_NAMES", "SearchSpace", "as_space", "get_space"]
