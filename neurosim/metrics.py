"""Error metrics, the loss, and the flip margin.

``Delta = y_L(faulty) - y_L(clean)``. A pair *fails* when its metric is ``>= eps``:

* ``linf`` ``||Delta||_inf``, ``l2`` ``||Delta||_2`` (the output error);
* ``loss`` the loss difference ``Delta_{L+1}`` (paper Def. 4): cross-entropy for integer
  labels, mean squared error for float targets;
* ``flip`` 1 when the argmax changes, else 0 (default ``eps`` 0.5).
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "DEFAULT_FLIP_EPS", "loss", "metric", "flip_margin", "is_classification"]

METRICS = ("linf", "l2", "loss", "flip")
#: The default failure threshold of ``flip`` (any flip fails); the other metrics need one.
DEFAULT_FLIP_EPS = 0.5


def is_classification(y) -> bool:
    """True for integer class labels (one per input), the case with accuracies and flips."""
    return y is not None and np.issubdtype(np.asarray(y).dtype, np.integer) and np.ndim(y) == 1


def loss(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row loss: cross-entropy for integer labels, mean squared error for float targets."""
    out = out.astype(np.float64)
    if np.issubdtype(y.dtype, np.integer):
        shift = out.max(axis=1, keepdims=True)
        lse = shift[:, 0] + np.log(np.exp(out - shift).sum(axis=1))
        return lse - out[np.arange(out.shape[0]), y]
    target = y.reshape(out.shape[0], -1)
    return ((out - target) ** 2).mean(axis=1)


def metric(name: str, faulty: np.ndarray, clean: np.ndarray, y_rows) -> np.ndarray:
    """The error metric ``name`` of each row (faulty output against its clean output)."""
    delta = faulty.astype(np.float64) - clean.astype(np.float64)
    if name == "linf":
        return np.abs(delta).max(axis=1)
    if name == "l2":
        return np.sqrt((delta ** 2).sum(axis=1))
    if name == "flip":
        return (faulty.argmax(axis=1) != clean.argmax(axis=1)).astype(np.float64)
    return loss(faulty, y_rows) - loss(clean, y_rows)


def flip_margin(out: np.ndarray) -> np.ndarray:
    """Half the gap between the two largest outputs of each row.

    An output change with ``||Delta||_inf`` below it cannot move the argmax, so it bounds the
    ``flip`` metric from below (the certificate's Prop. 2 skip, the theory's thresholds).
    """
    top2 = np.sort(np.asarray(out, dtype=np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) / 2.0
