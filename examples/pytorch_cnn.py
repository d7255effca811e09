"""Load a PyTorch CNN (TorchScript file), map it on Loihi 2 and Loihi 1, simulate, certify, plot.

Run:  python examples/pytorch_cnn.py        (needs the torch extra)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import neurosim  # noqa: E402
from _common import SMALL, digits_images, map_simulate_certify  # noqa: E402


def train_cnn(X, y, epochs):
    """A small LeNet-style CNN with BatchNorm, trained on the images (a stand-in for yours)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    for _ in range(epochs):
        for start in range(0, len(yt), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(Xt[start:start + 64]), yt[start:start + 64])
            loss.backward()
            optimizer.step()
    return model.eval()


def main(out="."):
    X, y = digits_images("NCHW")
    model = train_cnn(X, y, epochs=2 if SMALL else 30)
    path = Path(out) / "cnn.ts"
    torch.jit.save(torch.jit.script(model), path)           # what a user brings
    # PyTorch does not record the image size: give it (C, H, W).
    network = neurosim.load_network(path, input_shape=(1, 8, 8))
    with torch.no_grad():
        assert np.allclose(network.forward(X), model(torch.as_tensor(X, dtype=torch.float32)),
                           atol=1e-4)
    print("BatchNorm folded:", network.metadata["folded_batchnorm"])
    map_simulate_certify(network, X, y, ["loihi2", "loihi1"], "pytorch", out)


if __name__ == "__main__":
    main()
