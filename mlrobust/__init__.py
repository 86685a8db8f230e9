"""mlrobust: multi-label image classification with missing, partial, noisy and absent labels.

The package behind the book: label protocols (:mod:`mlrobust.labels`), losses
(:mod:`mlrobust.losses`), metrics (:mod:`mlrobust.metrics`), the embedded benchmark and
dataset registry (:mod:`mlrobust.data`), models (:mod:`mlrobust.models`), the training
engine (:mod:`mlrobust.engine`) and experiments (:mod:`mlrobust.experiments`).
"""

from . import labels, losses, metrics  # the public API contract: protocols, losses, metrics
from ._version import __version__

__all__ = ["labels", "losses", "metrics", "__version__"]
