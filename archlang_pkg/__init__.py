"""archlang: a declarative model-graph compiler for named-axis neural network descriptions."""
__version__ = "0.1.0"
