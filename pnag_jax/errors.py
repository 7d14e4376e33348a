"""User-facing error types.

Everything a user can get wrong (a malformed architecture string, an unknown space,
a missing data file, a bad checkpoint) raises a subclass of `PnagError`. The CLI
catches exactly this family and prints its message as one line; anything else is a
bug and keeps its traceback.
"""


class PnagError(Exception):
  """Base class for errors caused by user input, not by a bug."""


class ArchStringError(PnagError, ValueError):
  """An architecture string or native config could not be parsed."""


class UnknownSpaceError(PnagError, ValueError):
  """A search space name that is not registered."""


class DataError(PnagError, ValueError):
  """A data directory, file or column is missing or malformed."""


def one_line(msg, limit: int | None = None) -> str:
  """`msg` (any object) with its whitespace runs, newlines included, made single spaces;
  cut after `limit` characters, with "...", where given."""
  msg = " ".join(str(msg).split())
  return msg if limit is None or len(msg) <= limit else msg[:limit] + "..."
