"""synque-ray: rank candidate synthetic datasets by proxy metrics, on Ray.

The library's entry points (the `synque` command is a thin layer over them):

- `score(config, fresh=False, quiet=True) -> Run`: score a job (a YAML path or a dict shaped like it);
- `open_run(path) -> Run`: a published run read back;
- `Run`: `.rankings`, `.scores`, `.row_scores` (polars), `.verdict`, `.evaluate(...)`, `.select(...)`;
- `UserError`: a mistake in the input (its message is the CLI's one line); `RunFailed`: nothing honest
  could be published.
"""

from synque_ray.api import Run, Verdict, open_run, score
from synque_ray.errors import RunFailed, UserError

__version__ = "0.1.0"
__all__ = ["Run", "RunFailed", "UserError", "Verdict", "__version__", "open_run", "score"]
