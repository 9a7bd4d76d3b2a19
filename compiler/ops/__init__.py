"""The op registry and its families; importing this package registers every op."""
from . import contract, core, elementwise, index, mask, norm, reduce, reshape  # noqa: F401  (registration)
from . import attention, control, conv, fft, linear, pool, scatter, sort  # noqa: F401  (registration)
from . import add_norm, expert, gated, rotary  # noqa: F401  (registration)
from .registry import REGISTRY, OpDef, get, register

__all__ = ["REGISTRY", "OpDef", "get", "register"]
