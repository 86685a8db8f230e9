"""Methods: one module per paper holds what is not a loss or a head — its method factory
and arguments, its hooks (relabeling, propagation, similarity learning, corruption
matrices) and its benchmark cases — registered by name in :data:`METHODS`.

=================  ===========================================================
``supervised``     a loss on the observed labels (:mod:`.supervised`)
``curriculum``     Durand et al. 2019, curriculum relabeling (:mod:`.durand`)
``gold_correction``  Pene et al. 2021, GALC-SLR / GLC (:mod:`.pene`)
``ss_rml``         Cevikalp et al. 2019, SS-RML label propagation (:mod:`.cevikalp`)
``rmlc``           Cevikalp et al. 2019, RML with the trace term on fixed features
``imcl``           Huynh & Elhamifar 2020, IMCL: BCE plus label and feature smoothness
                   over similarities learned per batch by joint nonnegative OMP (:mod:`.huynh`)
``consistency``    Wang et al. 2023, consistency regularisation (weak -> strong
                   pseudo-labels); its SR is the ``saliency`` pooling of the head
=================  ===========================================================
"""

from . import cevikalp, durand, huynh, pene, supervised, wang  # noqa: F401  (each registers its methods and bench cases)
from .base import (BENCH_CASES, METHODS, BenchCase, FitFn, MethodContext, MethodSpec, NoArgs, build_method,
                   create_method, register_bench_case, register_method)
from .supervised import SupervisedMethod

__all__ = ["METHODS", "MethodContext", "MethodSpec", "NoArgs", "register_method", "build_method", "create_method",
           "BENCH_CASES", "BenchCase", "register_bench_case", "FitFn", "SupervisedMethod"]
