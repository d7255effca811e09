"""Optional simulation backends.

``neurosim.backends.lava`` runs a network (or a chip mapping) through Intel's Lava framework
(``lava-nc``, Python 3.10 only): ``run_lava``, ``integer_forward``, ``lava_simulate``. Lava is
imported lazily, inside those functions, so importing this package never needs it.
"""

__all__ = ["lava"]
