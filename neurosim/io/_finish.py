"""The last step shared by the Keras and PyTorch readers."""

from __future__ import annotations

import warnings

from neurosim.errors import NeurosimError
from neurosim.network import Dense, Network


def finish_network(layers: list[Dense], metadata: dict, dropped_softmax: bool, source: str,
                   stacklevel: int) -> Network:
    """Build the Network; warn once and record it when an output softmax was dropped.

    Errors from the Network's validation keep their type and start with ``source``.
    """
    if dropped_softmax:
        warnings.warn(
            f"{source}: the model ends with a softmax, which neurosim drops: the loaded network "
            "outputs logits (its argmax, hence its predictions, are unchanged).",
            stacklevel=stacklevel + 1,
        )
        metadata["dropped_output_softmax"] = True
    try:
        return Network(layers, metadata=metadata)
    except NeurosimError as exc:
        raise type(exc)(f"{source}: {exc}") from None
