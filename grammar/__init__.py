"""The .arch language: grammar, AST and parser."""
from .parse import SyntaxErrorReport, parse

__all__ = ["parse", "SyntaxErrorReport"]
