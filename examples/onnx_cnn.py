"""Load an ONNX CNN (exported from PyTorch), map it on Loihi 2 and SpiNNaker 2, simulate,
certify, plot.

Run:  python examples/onnx_cnn.py        (needs the onnx extra and torch for the export)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import neurosim  # noqa: E402
from _common import SMALL, digits_images, map_simulate_certify  # noqa: E402
from pytorch_cnn import train_cnn  # noqa: E402


def main(out="."):
    X, y = digits_images("NCHW")
    model = train_cnn(X, y, epochs=2 if SMALL else 30)
    path = Path(out) / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        torch.onnx.export(model, torch.zeros(1, 1, 8, 8), path, dynamo=False, opset_version=17)
    network = neurosim.load_network(path)  # the input shape comes from the ONNX graph
    # (TrueNorth would refuse it: a core there takes 256 axons, and a neuron of the second conv
    # receives 8 x 6 x 6 = 288 activations through the max pooling its core computes.)
    map_simulate_certify(network, X, y, ["loihi2", "spinnaker2"], "onnx", out)


if __name__ == "__main__":
    main()
