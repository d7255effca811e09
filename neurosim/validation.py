"""One declarative parameter check for every public function and command-line flag.

In the spirit of scikit-learn's ``validate_params``: a function declares a constraint per
parameter, and every call is checked *before any work starts*, with one message template::

    The 'confidence' parameter of simulate must be a float in (0, 1). Got 'abc' instead.

The command line checks its flags with the same constraints (owner ``neurosim simulate``, the
flag as the name), so a bad value reads the same in Python and in a shell.

Constraints are small objects with ``is_satisfied_by(value)`` and a ``description`` (the
"must be ..." text); combine alternatives with ``|`` (``Interval(...) | None``).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable

import numpy as np

from neurosim.errors import ValidationError, param_error

__all__ = [
    "Constraint",
    "Interval",
    "Integer",
    "Options",
    "InstanceOf",
    "Satisfies",
    "NoneAllowed",
    "check_param",
    "check_flags",
    "validate_params",
    "OPEN_UNIT",
    "NON_NEGATIVE",
    "SECONDS",
    "SEED",
    "SAMPLES",
    "MAX_SAMPLES",
    "POSITIVE_INT",
    "BOOLEAN",
    "check_inputs",
]


class Constraint:
    """A condition on one parameter value, with the text that completes "must be ..."."""

    description = "valid"

    def is_satisfied_by(self, value: Any) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def __or__(self, other) -> "AnyOf":
        return AnyOf(self, _as_constraint(other))

    def __ror__(self, other) -> "AnyOf":
        return AnyOf(_as_constraint(other), self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.description}>"


class AnyOf(Constraint):
    """Satisfied when any of its constraints is."""

    def __init__(self, *constraints: Constraint):
        self.constraints = []
        for c in constraints:
            self.constraints.extend(c.constraints if isinstance(c, AnyOf) else [c])
        self.description = " or ".join(c.description for c in self.constraints)

    def is_satisfied_by(self, value) -> bool:
        return any(c.is_satisfied_by(value) for c in self.constraints)

    def without_none(self) -> Constraint:
        """The same alternatives but None (a flag that is given is never None)."""
        rest = [c for c in self.constraints if not isinstance(c, NoneAllowed)]
        return rest[0] if len(rest) == 1 else AnyOf(*rest)


class NoneAllowed(Constraint):
    """The value None."""

    description = "None"

    def is_satisfied_by(self, value) -> bool:
        return value is None


def _is_real(value) -> bool:
    if isinstance(value, np.ndarray):  # a 0-d numeric array counts as its number
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return (isinstance(value, (numbers.Real, np.floating, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def _is_integer(value) -> bool:
    return (isinstance(value, (numbers.Integral, np.integer))
            and not isinstance(value, (bool, np.bool_)))


class Interval(Constraint):
    """A finite real number in an interval; ``closed`` is "both", "left", "right" or "neither".

    ``lo`` or ``hi`` may be None (unbounded on that side); ``allow_inf`` also accepts +inf
    there (e.g. "never" for a time interval).
    """

    def __init__(self, lo: "float | None", hi: "float | None", closed: str = "both",
                 kind: str = "a float", allow_inf: bool = False):
        self.lo, self.hi, self.closed, self.allow_inf = lo, hi, closed, allow_inf
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        noun = kind if allow_inf else kind.replace("a ", "a finite ", 1)
        if lo is not None and hi is not None:
            self.description = f"{kind} in {left}{lo:g}, {hi:g}{right}"
        elif lo is not None:
            self.description = f"{noun} {'>=' if left == '[' else '>'} {lo:g}"
        elif hi is not None:
            self.description = f"{noun} {'<=' if right == ']' else '<'} {hi:g}"
        else:
            self.description = f"a finite {kind.split()[-1]}"
        if allow_inf:
            self.description += " (or inf)"

    def is_satisfied_by(self, value) -> bool:
        if not _is_real(value):
            return False
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not (self.allow_inf and v > 0 and self.hi is None)):
            return False
        if self.lo is not None and (v < self.lo or (v == self.lo and self.closed in ("right", "neither"))):
            return False
        if self.hi is not None and (v > self.hi or (v == self.hi and self.closed in ("left", "neither"))):
            return False
        return True


class Integer(Constraint):
    """An integer (not a bool) with an optional lower bound; ``integral_floats`` also accepts
    floats with an integer value (``1e6``)."""

    def __init__(self, lo: "int | None" = None, description: "str | None" = None,
                 integral_floats: bool = False, hi: "int | None" = None):
        self.lo = lo
        self.hi = hi
        self.integral_floats = integral_floats
        self.description = description or (
            "an integer" if lo is None else
            "a positive integer" if lo == 1 else
            "a non-negative integer" if lo == 0 else f"an integer >= {lo}")
        if hi is not None and description is None:
            self.description += f" at most {hi:,}".replace(",", "_") if hi < 10**6 else \
                f" at most {hi:.0e}".replace("e+0", "e").replace("e+", "e")

    def is_satisfied_by(self, value) -> bool:
        if self.integral_floats and _is_real(value) and not _is_integer(value):
            v = float(value)
            return (math.isfinite(v) and v == int(v) and (self.lo is None or v >= self.lo)
                    and (self.hi is None or v <= self.hi))
        return (_is_integer(value) and (self.lo is None or int(value) >= self.lo)
                and (self.hi is None or int(value) <= self.hi))


class Options(Constraint):
    """One of a fixed set of values (names)."""

    def __init__(self, values):
        self.values = tuple(values)
        self.description = "one of " + ", ".join(map(str, self.values))

    def is_satisfied_by(self, value) -> bool:
        try:
            return value in self.values
        except TypeError:  # an unhashable / incomparable value
            return False


class InstanceOf(Constraint):
    """An instance of one of the given types."""

    def __init__(self, *types: type, description: "str | None" = None):
        self.types = types
        self.description = description or "a " + " or ".join(t.__name__ for t in types)

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.types)


class Satisfies(Constraint):
    """Any value for which ``predicate(value)`` is true."""

    def __init__(self, predicate: Callable[[Any], bool], description: str):
        self.predicate = predicate
        self.description = description

    def is_satisfied_by(self, value) -> bool:
        try:
            return bool(self.predicate(value))
        except Exception:
            return False


def _as_constraint(c) -> Constraint:
    if c is None:
        return NoneAllowed()
    if isinstance(c, Constraint):
        return c
    raise TypeError(f"not a constraint: {c!r}")


#: Reusable constraints.
OPEN_UNIT = Interval(0.0, 1.0, "neither")
NON_NEGATIVE = Interval(0.0, None, "left", kind="a number")
#: A duration that may be infinite ("never").
SECONDS = Interval(0.0, None, "left", kind="a number", allow_inf=True)
POSITIVE_INT = Integer(1)
#: The most fault draws (or chips) one run takes: more would not finish.
MAX_SAMPLES = 10**9
SAMPLES = Integer(1, hi=MAX_SAMPLES)
#: numpy's SeedSequence takes any non-negative integer; run files store seeds as JSON numbers.
SEED = Integer(0, hi=2**63 - 1, description="a non-negative integer below 2**63")
BOOLEAN = InstanceOf(bool, np.bool_, description="True or False")


def check_param(owner: str, name: str, value, constraint, what: str = "parameter") -> None:
    """Raise the house :class:`~neurosim.errors.ValidationError` unless ``value`` satisfies
    ``constraint`` (``what="flag"`` for a command-line flag)."""
    constraint = _as_constraint(constraint)
    if not constraint.is_satisfied_by(value):
        raise param_error(owner, name, constraint.description, value, what)


def check_flags(owner: str, function, flags: dict) -> None:
    """Check command-line flags with the constraints ``function`` declares for its parameters.

    ``flags`` maps a flag (``--confidence``) to ``(parameter name, value)``.
    """
    declared = getattr(function, "__neurosim_params__", {})
    for flag, (param, value) in flags.items():
        if param in declared and value is not None:
            constraint = declared[param]
            if isinstance(constraint, AnyOf):
                constraint = constraint.without_none()
            check_param(owner, flag, value, constraint, what="flag")


def validate_params(constraints: dict, owner: "str | None" = None):
    """Decorator: check the named parameters of every call against ``constraints`` first.

    The constraints stay readable on the function as ``__neurosim_params__`` (the command
    line reuses them for its flags).
    """
    constraints = {name: _as_constraint(c) for name, c in constraints.items()}

    def decorate(func):
        signature = inspect.signature(func)
        missing = set(constraints) - set(signature.parameters)
        if missing:  # pragma: no cover - a programming error, caught by any test
            raise TypeError(f"{func.__name__} has no parameters {sorted(missing)}")
        who = owner or func.__name__

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, constraint in constraints.items():
                check_param(who, name, bound.arguments[name], constraint)
            return func(*args, **kwargs)

        wrapper.__neurosim_params__ = constraints
        return wrapper

    return decorate


def check_inputs(network, X, y=None, owner: str = "simulate"):
    """``X`` (and ``y``) checked against ``network``: ``(X, y)`` as arrays, or a clear error.

    ``X`` must be ``(n_inputs, n_0)`` and finite (:meth:`Network.check_input`); ``y`` needs
    one entry per input and, for integer class labels, values in ``[0, n_L - 1]``.
    """
    if X is None:
        raise ValidationError(f"{owner} needs inputs X (n_inputs, n_features).")
    X = network.check_input(X, owner="input data X")
    m = X.shape[0]
    if m == 0:
        raise ValidationError(f"{owner} needs at least one input; X has shape {X.shape}.")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != m:
            raise ValidationError(
                f"The labels y must have one entry per input: {m}. Got "
                f"{'a scalar' if y.ndim == 0 else y.shape[0]} instead."
            )
        if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 and (
                y.min(initial=0) < 0 or y.max(initial=0) >= network.n_outputs):
            bad = int(np.flatnonzero((y < 0) | (y >= network.n_outputs))[0])
            raise ValidationError(
                f"The labels y of {owner} must be class indices in [0, {network.n_outputs - 1}] "
                f"(the network has {network.n_outputs} outputs). Got values in [{y.min()}, "
                f"{y.max()}] instead (first out of range: y[{bad}] = {y[bad]}).")
        if y.ndim == 2 and y.shape[1] != network.n_outputs:
            raise ValidationError(
                f"The targets y of {owner} must have one column per network output "
                f"({network.n_outputs}). Got shape {y.shape} instead.")
    return X, y
