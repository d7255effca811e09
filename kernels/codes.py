"""Numeric codes shared by the kernels and the Python code that fills their arrays.

Plain integers, no Numba: importing this module compiles nothing.
"""

#: Row status: how a row's activations differ from its input's cached clean ones.
CLEAN, SPARSE, DENSE = 0, 1, 2

#: Fault record kinds (``FaultBatch.kind``).
REC_CRASH, REC_WEIGHT, REC_TILE, REC_NEURON = 0, 1, 2, 3

#: Which parameter of a spiking neuron a ``REC_NEURON`` record scales (its ``crash_mode``
#: column; ``value``: the factor).
NEURON_THRESHOLD, NEURON_LEAK = 0, 1

#: What a crashed neuron outputs (``FaultBatch.crash_mode`` of a crash record):
#: ``y := 0``; ``z := b, y := phi(b)`` (paper Def. 3; on the input layer as silent);
#: ``y := value``.
CRASH_SILENT, CRASH_PAPER, CRASH_STUCK = 0, 1, 2

#: Activation codes: the order of ``neurosim.activations.ACTIVATIONS``.
ACT_RELU, ACT_LEAKY, ACT_TANH, ACT_SIGMOID, ACT_SOFTPLUS, ACT_IDENTITY = 0, 1, 2, 3, 4, 5
ACT_ELU, ACT_HARDTANH, ACT_GELU, ACT_GELU_TANH, ACT_SILU, ACT_HARDSWISH, ACT_HARDSIGMOID = (
    6, 7, 8, 9, 10, 11, 12)
