"""Tasks: named scores over a space's architectures, for stage 3's meta-training.

A task is a name, a score per arch (of the whole space or a subset) and a direction.
The built-in ones are benchmark table columns (NB201) and each space's exact
`params` / `flops`; users bring their own as a CSV of (arch, score). Tasks load their
data only when asked, so `--exclude` can hold some out without ever reading them.
"""

from pnag_jax.tasks.base import Task, TaskData, select_tasks, strict_float
from pnag_jax.tasks.builtin import builtin_tasks, require_known, require_tables
from pnag_jax.tasks.costs import flops_of, params_of
from pnag_jax.tasks.user import read_archs, read_task_csv

__all__ = ["Task", "TaskData", "builtin_tasks", "flops_of", "params_of", "read_archs",
           "read_task_csv", "require_known", "require_tables", "select_tasks",
           "strict_float"]
