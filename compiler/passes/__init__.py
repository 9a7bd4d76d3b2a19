"""IR -> IR optimisation: the pass manager, the rewrite-rule engine, and the passes."""
from .manager import PassBug, PassContext, PassResult, Report
from .pipeline import LEVELS, PASSES, UnknownPass, optimize, pipeline

__all__ = ["LEVELS", "PASSES", "PassBug", "PassContext", "PassResult", "Report", "UnknownPass", "optimize",
           "pipeline"]
