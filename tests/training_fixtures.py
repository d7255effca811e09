"""Fixtures shared by the training test modules (``test_train.py``, ``test_train_conv.py``),
which import them by name: PyTorch on one thread for the module (the nets are tiny: one
thread is much faster than several, and fully deterministic), and the training data sets."""

import pytest

from neurosim.train import load_training_data


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_training_data("digits")


@pytest.fixture(scope="module")
def diabetes():
    return load_training_data("diabetes")
