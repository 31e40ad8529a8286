"""synque-ray: rank candidate synthetic datasets by proxy metrics, on Ray.

The library's entry points (the `synque` command is a thin layer over them):

- `score(config, fresh=False, quiet=True) -> Run`: score a job (a YAML path or a dict shaped like it);
- `open_run(path) -> Run`: a published run read back;
- `score_demo(fresh=False, quiet=True) -> Run`: the embedded demo, scored and evaluated against its known order;
- `explain() -> str`: what every proxy, column and finding means;
- `Run`: `.rankings`, `.scores`, `.row_scores` (polars), `.verdict`, `.evaluation`, `.evaluate(...)`,
  `.select(...)`, `.write_report(...)`;
- `UserError`: a mistake in the input (its message is the CLI's one line); `RunFailed`: nothing honest
  could be published.
"""

from synque_ray.api import Run, Verdict, explain, open_run, score, score_demo
from synque_ray.errors import RunFailed, UserError

__version__ = "0.1.0"
__all__ = ["Run", "RunFailed", "UserError", "Verdict", "__version__", "explain", "open_run", "score", "score_demo"]
