"""Load a Keras CNN (.keras file, N x H x W x C), map it on SpiNNaker 2 and an RRAM crossbar,
simulate, certify, plot.

Run:  KERAS_BACKEND=torch python examples/keras_cnn.py     (needs keras and a backend)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import neurosim  # noqa: E402
from _common import SMALL, digits_images, map_simulate_certify  # noqa: E402


def main(out="."):
    X, y = digits_images("NHWC")                               # Keras images are N x H x W x C
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
        keras.layers.ReLU(max_value=6.0), keras.layers.MaxPooling2D(2),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, y, epochs=2 if SMALL else 30, batch_size=64, verbose=0)
    path = Path(out) / "cnn.keras"
    model.save(path)                                           # what a user brings
    network = neurosim.load_network(path)                      # read without importing Keras
    assert network.layout == "NHWC"
    assert np.allclose(network.forward(X), model.predict(X, verbose=0), atol=1e-4)
    map_simulate_certify(network, X, y, ["spinnaker2", "rram_crossbar"], "keras", out)


if __name__ == "__main__":
    main()
