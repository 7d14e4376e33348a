"""Host-side helpers shared by the native-format parsers.

Parsers must turn every bad input into one readable `ArchStringError` line, so
values are quoted through a bounded repr and JSON duplicates are refused.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from pnag_jax.errors import ArchStringError


def short_repr(x: Any, limit: int = 60) -> str:
  """A bounded repr, so error messages stay one readable line."""
  try:
    r = repr(x)
  except Exception:  # pylint: disable=broad-except
    r = f"<{type(x).__name__}>"
  return r if len(r) <= limit else r[:limit - 3] + "..."


def integer_genes(genes: Any, space: str) -> list[int]:
  """`genes` as Python ints, flattened; a non-integer dtype is refused, since `int()`
  would read 3.7 as 3."""
  genes = np.asarray(genes)
  if not np.issubdtype(genes.dtype, np.integer):
    raise ArchStringError(f"{space} genes must be integers, got dtype {genes.dtype}")
  return [int(x) for x in genes.reshape(-1)]


def is_int(x: Any) -> bool:
  """An integer that is not a bool (`True` must not pass for 1)."""
  return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def no_duplicate_keys(what: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
  """A `json.loads` object hook refusing duplicate keys (json keeps the last one)."""

  def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, v in pairs:
      if k in out:
        raise ArchStringError(f"{what}: duplicate key {short_repr(k)}")
      out[k] = v
    return out

  return hook


MAX_STRING_CHARS = 1 << 16  # canonical strings are a few hundred characters


def load_json(s: Any, what: str) -> Any:
  """`json.loads` for user input: every failure is one `ArchStringError` line.

  Also bounds the input length, so a pasted blob cannot cost unbounded parse time.
  """
  if not isinstance(s, str):
    raise ArchStringError(f"{what} string: expected str, got {type(s).__name__}")
  if len(s) > MAX_STRING_CHARS:
    raise ArchStringError(
        f"{what} string: {len(s)} characters is more than the {MAX_STRING_CHARS} allowed")
  try:
    return json.loads(s, object_pairs_hook=no_duplicate_keys(what))
  except ArchStringError:
    raise
  # JSONDecodeError and int-digit limits are ValueErrors; deep nesting recurses.
  except (ValueError, RecursionError, MemoryError, OverflowError, TypeError) as e:
    msg = str(e) or type(e).__name__
    raise ArchStringError(
        f"{what} string is not valid JSON: {type(e).__name__}: {short_repr(msg, 120)}") from None
