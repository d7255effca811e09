"""Sums of floats that merge exactly and in any order.

A block of work reports float sums (of the error metric, of each output component of the
error); a run adds them up. Float addition is not associative, so adding block sums in another
order (a process pool, a cluster, a resumed run) would change the last bits. :class:`ExactSum`
holds the exact value of a sum of floats as an integer count of the smallest float64 step
(``2**-1074``): adding is integer addition (exact, associative, commutative), and the float
value is rounded once, correctly, at the end. Infinities and NaN (which no integer holds) add
up as floats beside it; their sum does not depend on the order either.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ExactSum"]

_UNIT_BITS = 1074  # 2**-1074 is the smallest positive float64
_UNIT = 1 << _UNIT_BITS


def _to_units(x: float) -> int:
    num, den = x.as_integer_ratio()  # den is a power of two <= 2**1074
    return num << (_UNIT_BITS - den.bit_length() + 1)


def _value(units: int, special: float) -> float:
    if special != 0.0:
        return special
    try:
        return units / _UNIT
    except OverflowError:
        return math.inf if units > 0 else -math.inf


class ExactSum:
    """The exact sum of a multiset of floats (a scalar, or one sum per vector component)."""

    __slots__ = ("units", "special")

    def __init__(self, units=0, special=0.0):
        self.units = units      # int, or tuple of ints for a vector sum
        self.special = special  # float (or float tuple): the sum of the non-finite terms

    @classmethod
    def of(cls, values) -> "ExactSum":
        """The sum of one block: ``values`` is a float or a 1-D array (one sum per entry)."""
        if np.ndim(values) == 0:
            x = float(values)
            return cls(_to_units(x), 0.0) if math.isfinite(x) else cls(0, x)
        array = np.asarray(values, dtype=np.float64)
        if np.isfinite(array).all():  # the usual case: no special part
            return cls(tuple(map(_to_units, array.tolist())), (0.0,) * array.size)
        units, special = [], []
        for x in array.tolist():
            finite = math.isfinite(x)
            units.append(_to_units(x) if finite else 0)
            special.append(0.0 if finite else x)
        return cls(tuple(units), tuple(special))

    @classmethod
    def zeros(cls, n: "int | None" = None) -> "ExactSum":
        """An empty sum: scalar (``n`` None) or with ``n`` components."""
        return cls(0, 0.0) if n is None else cls((0,) * n, (0.0,) * n)

    def __add__(self, other: "ExactSum") -> "ExactSum":
        if isinstance(self.units, tuple):
            if len(self.units) != len(other.units):
                raise ValueError("ExactSum: adding sums of different lengths")
            return ExactSum(tuple(map(int.__add__, self.units, other.units)),
                            tuple(map(float.__add__, self.special, other.special)))
        return ExactSum(self.units + other.units, self.special + other.special)

    def value(self):
        """The sum, rounded once to float64 (an ndarray for a vector sum); a sum beyond the
        largest float is +-inf, as float addition would give."""
        if isinstance(self.units, tuple):
            return np.array([_value(u, s) for u, s in zip(self.units, self.special)],
                            dtype=np.float64)
        return _value(self.units, self.special)

    def __eq__(self, other) -> bool:
        if not isinstance(other, ExactSum):
            return NotImplemented
        return self.units == other.units and np.array_equal(
            np.asarray(self.special), np.asarray(other.special), equal_nan=True)

    def __repr__(self) -> str:
        return f"ExactSum({self.value()!r})"

    # --- files: integers as decimal text, non-finite parts as floats -----------------------
    def to_state(self) -> dict:
        units = list(self.units) if isinstance(self.units, tuple) else self.units
        special = list(self.special) if isinstance(self.special, tuple) else self.special
        return {"units": [str(u) for u in units] if isinstance(units, list) else str(units),
                "special": special}

    @classmethod
    def from_state(cls, state: dict) -> "ExactSum":
        units, special = state["units"], state["special"]
        if isinstance(units, list):
            return cls(tuple(int(u) for u in units), tuple(float(s) for s in special))
        return cls(int(units), float(special))
