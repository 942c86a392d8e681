"""Evaluation: features, references, the evaluation context, ``prakit eval``, the guidance
search and ``prakit compare``. The evaluators and feature networks themselves are plugins.

    from prakit.eval import evaluate, resolve
    record = evaluate(resolve("runs/quickstart"))      # also writes eval.json, eval.md, plots
    record["numbers"]                                  # {'fid': ..., 'precision': ..., ...}
"""

from prakit.eval.context import EvalContext
from prakit.eval.evaluate import evaluate, resolve
from prakit.eval.features import Features, Moments

__all__ = ["EvalContext", "Features", "Moments", "evaluate", "resolve"]
