"""Train the bundled demo model: an MLP 64-256-256-10 on scikit-learn's 8x8 digits.

Writes ``digits_mlp.h5`` (the network, neurosim's HDF5 format) and ``digits_test.npz``
(the held-out split: ``X`` float32 of shape (397, 64), ``y`` int64) into ``--out-dir``
(default ``neurosim/bundled``). Training is deterministic: fixed seeds, deterministic
algorithms, one CPU thread.

Usage::

    python scripts/train_digits.py [--out-dir DIR] [--epochs N] [--seed S]

Needs torch and scikit-learn (the ``torch`` and ``dev`` extras).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "neurosim" / "bundled"

TEST_SIZE = 397
SPLIT_SEED = 0
WIDTHS = (64, 256, 256, 10)
LR = 1e-3
BATCH_SIZE = 64
WEIGHT_DECAY = 0.0


def load_split():
    """The digits data scaled to [0, 1] and split 1400 / 397 (stratified, ``random_state=0``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y
    )
    return X_train, X_test, y_train, y_test


def train(X_train, y_train, epochs: int, seed: int):
    """Train the MLP with Adam and cross-entropy; return the ``nn.Sequential``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(1, len(WIDTHS)):
        layers.append(nn.Linear(WIDTHS[i - 1], WIDTHS[i]))
        if i < len(WIDTHS) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    return fit(model, optimizer, torch.from_numpy(X_train), torch.from_numpy(y_train), epochs,
               seed)


def fit(model, optimizer, X, y, epochs: int, seed: int):
    """Minibatch training with cross-entropy, the batches shuffled by a generator seeded with
    ``seed`` (the loop both bundled models are trained with); returns the model in eval mode."""
    import torch
    from torch import nn

    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}/{epochs}: loss {total / n:.4f}")
    model.eval()
    return model


def to_network(model, metadata: dict):
    """Convert the trained ``nn.Sequential`` to a float32 :class:`neurosim.Network`."""
    from torch import nn

    from neurosim import Network

    linears = [m for m in model if isinstance(m, nn.Linear)]
    weights = [m.weight.detach().cpu().numpy().astype(np.float32) for m in linears]
    biases = [m.bias.detach().cpu().numpy().astype(np.float32) for m in linears]
    activations = ["relu"] * (len(linears) - 1) + ["identity"]
    return Network.from_arrays(weights, biases, activations, dtype=np.float32, metadata=metadata)


def parse_args(argv, doc: str, outputs: str, epochs: int):
    """The bundle scripts' flags (``--out-dir``, ``--epochs``, ``--seed``), checked."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help=f"folder for {outputs} (default: {DEFAULT_OUT_DIR})")
    parser.add_argument("--epochs", type=int, default=epochs,
                        help=f"training epochs (default: {epochs})")
    parser.add_argument("--seed", type=int, default=0, help="torch seed (default: 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer; got {args.epochs}")
    if not args.out_dir.is_dir():
        parser.error(f"--out-dir {str(args.out_dir)!r} is not an existing folder")
    return args


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, "digits_mlp.h5 and digits_test.npz", epochs=60)

    import torch

    from neurosim.io.atomic import atomic_path
    from neurosim.io.hdf5 import save_network_h5

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    X_train, X_test, y_train, y_test = load_split()
    t0 = time.perf_counter()
    model = train(X_train, y_train, args.epochs, args.seed)
    elapsed = time.perf_counter() - t0

    metadata = {
        "name": "digits-mlp",
        "dataset": "sklearn.datasets.load_digits (8x8, features scaled to [0, 1] by /16)",
        "split": {
            "method": "sklearn.model_selection.train_test_split, stratified",
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
            "random_state": SPLIT_SEED,
        },
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "optimizer": "Adam",
        "lr": LR,
        "loss": "cross_entropy",
        "torch_version": torch.__version__,
        "trained_by": "scripts/train_digits.py",
    }
    network = to_network(model, metadata)
    # Accuracies measured on the converted network, i.e. what users of the bundle will see.
    train_acc = float(np.mean(network.predict(X_train) == y_train))
    test_acc = float(np.mean(network.predict(X_test) == y_test))
    network.metadata["train_accuracy"] = round(train_acc, 6)
    network.metadata["test_accuracy"] = round(test_acc, 6)

    model_path = args.out_dir / "digits_mlp.h5"
    data_path = args.out_dir / "digits_test.npz"
    save_network_h5(network, model_path)
    with atomic_path(data_path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
            np.savez_compressed(fh, X=X_test.astype(np.float32), y=y_test.astype(np.int64))

    print(f"trained {args.epochs} epochs in {elapsed:.1f} s")
    print(f"train accuracy: {train_acc:.4f}")
    print(f"test accuracy:  {test_acc:.4f}")
    print(f"wrote {model_path} ({os.path.getsize(model_path)} bytes)")
    print(f"wrote {data_path} ({os.path.getsize(data_path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
