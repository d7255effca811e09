"""JSON for what neurosim's results hold: numpy arrays and numpy scalars."""

from __future__ import annotations

import numpy as np

__all__ = ["json_default"]


def json_default(value):
    """``json.dumps(..., default=json_default)``: arrays become lists, numpy scalars numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
