"""Map the bundled digits CNN on your own chip profile (a TOML file), simulate its fault rates,
certify, plot.

Run:  python examples/custom_profile.py [PROFILE.toml]      (default: examples/my_chip.toml)
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import neurosim  # noqa: E402
from _common import digits_images, map_simulate_certify  # noqa: E402


def main(profile=HERE / "my_chip.toml", out="."):
    chip = neurosim.load_profile(profile)          # checked: a bad key or value names itself
    print(f"profile {chip.name}: {chip.description}")
    network = neurosim.load_digits_conv_model()    # the bundled CNN (BatchNorm folded)
    X, y = digits_images("NCHW")
    mapping = map_simulate_certify(network, X, y, [chip, "loihi2"], "custom", out)
    print("binding limit per layer:", [mapping.binding_limit(l) for l in range(1, 5)])


if __name__ == "__main__":
    main(*sys.argv[1:2])
