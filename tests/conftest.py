import os

# Keras 3 reads its backend at import time; the tests create Keras files on the torch backend.
os.environ.setdefault("KERAS_BACKEND", "torch")
