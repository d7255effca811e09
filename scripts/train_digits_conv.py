"""Train the bundled conv model: a small CNN with BatchNorm on scikit-learn's 8x8 digits.

The digits are 1 x 8 x 8 images (pixels / 16); the network is

    Conv2d(1, 8, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2)
    Conv2d(8, 16, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2)
    Flatten - Linear(64, 32) - ReLU - Linear(32, 10)

trained with Adam and cross-entropy on the same 1400 / 397 split as the bundled MLP
(``scripts/train_digits.py``), then read by neurosim's PyTorch reader, which folds the
BatchNorms into the convolutions with their running statistics. Writes ``digits_cnn.h5``
into ``--out-dir`` (default ``neurosim/bundled``); the test split is the MLP's
``digits_test.npz`` (flat rows are the images in C, H, W order). Deterministic: fixed seeds,
deterministic algorithms, one CPU thread.

Usage::

    python scripts/train_digits_conv.py [--out-dir DIR] [--epochs N] [--seed S]

Needs torch and scikit-learn (the ``torch`` and ``dev`` extras).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from train_digits import BATCH_SIZE, LR, SPLIT_SEED, fit, load_split, parse_args  # noqa: E402

INPUT_SHAPE = (1, 8, 8)


def build(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def train(X_train, y_train, epochs: int, seed: int):
    import torch

    model = build(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return fit(model, optimizer, torch.from_numpy(X_train.reshape(-1, *INPUT_SHAPE)),
               torch.from_numpy(y_train), epochs, seed)


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, "digits_cnn.h5", epochs=40)

    import torch

    from neurosim.io.hdf5 import save_network_h5
    from neurosim.io.torch import network_from_torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    X_train, X_test, y_train, y_test = load_split()
    t0 = time.perf_counter()
    model = train(X_train, y_train, args.epochs, args.seed)
    elapsed = time.perf_counter() - t0
    network = network_from_torch(model, input_shape=INPUT_SHAPE).astype(np.float32)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(X_test.reshape(-1, *INPUT_SHAPE))).numpy()
    ours = network.forward(X_test)
    assert np.allclose(ours, torch_out, rtol=1e-4, atol=1e-4), np.abs(ours - torch_out).max()
    train_acc = float((network.predict(X_train) == y_train).mean())
    test_acc = float((network.predict(X_test) == y_test).mean())
    network.metadata.update({
        "name": "digits-cnn",
        "dataset": "sklearn.datasets.load_digits as 1 x 8 x 8 images (pixels / 16)",
        "split": {"method": "sklearn.model_selection.train_test_split, stratified",
                  "n_train": int(len(y_train)), "n_test": int(len(y_test)),
                  "random_state": SPLIT_SEED},
        "architecture": "conv8-bn-relu-maxpool2-conv16-bn-relu-maxpool2-flatten-fc32-relu-fc10",
        "seed": args.seed, "epochs": args.epochs, "batch_size": BATCH_SIZE, "optimizer": "Adam",
        "lr": LR, "loss": "cross_entropy", "torch_version": torch.__version__,
        "train_accuracy": train_acc, "test_accuracy": test_acc,
        "training_seconds": round(elapsed, 2),
        "trained_by": "scripts/train_digits_conv.py",
    })
    path = args.out_dir / "digits_cnn.h5"
    save_network_h5(network, path)
    print(f"{network!r}: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} "
          f"({elapsed:.1f} s); wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
