"""Loop iterators. Under the NKI tracer an affine/sequential loop index is a symbolic expression, so the simulator
hands out an int that allows index arithmetic but refuses Python control flow on it."""
from __future__ import annotations

import numpy as np

_ADVICE = (
    "the index of nl.affine_range / nl.sequential_range is symbolic in NKI: use it in index arithmetic and masks, "
    "not in Python control flow or comparisons (use nl.static_range for a Python int)"
)


class LoopIndex(int):
    """An affine loop index: +, -, * with integers stay affine; comparisons, bool() and // are refused."""

    def _affine(self, other, op):
        if isinstance(other, (int, np.integer)):
            return LoopIndex(op(int(self), int(other)))
        return NotImplemented

    def __add__(self, other):
        return self._affine(other, lambda a, b: a + b)

    def __radd__(self, other):
        return self._affine(other, lambda a, b: b + a)

    def __sub__(self, other):
        return self._affine(other, lambda a, b: a - b)

    def __rsub__(self, other):
        return self._affine(other, lambda a, b: b - a)

    def __mul__(self, other):
        return self._affine(other, lambda a, b: a * b)

    def __rmul__(self, other):
        return self._affine(other, lambda a, b: b * a)

    def __neg__(self):
        return LoopIndex(-int(self))

    def _refuse(self, other=None):
        if isinstance(other, np.ndarray):
            return NotImplemented
        raise TypeError(_ADVICE)

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _refuse
    __hash__ = int.__hash__

    def __bool__(self):
        raise TypeError(_ADVICE)


def affine_range(*args):
    return (LoopIndex(i) for i in range(*args))


def sequential_range(*args):
    return (LoopIndex(i) for i in range(*args))


def static_range(*args) -> range:
    return range(*args)
