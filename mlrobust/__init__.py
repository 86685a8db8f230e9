"""mlrobust: multi-label image classification with missing, partial, noisy and absent labels.

The package behind the book: label protocols (:mod:`mlrobust.labels`), losses
(:mod:`mlrobust.losses`), metrics (:mod:`mlrobust.metrics`), the embedded benchmark and
dataset registry (:mod:`mlrobust.data`), models (:mod:`mlrobust.models`), the training
engine (:mod:`mlrobust.engine`) and experiments (:mod:`mlrobust.experiments`).
"""

__version__ = "0.1.0"

from . import labels, losses, metrics  # noqa: E402  (the public API contract, design section 4)

__all__ = ["labels", "losses", "metrics", "__version__"]
