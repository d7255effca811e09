"""Run: python docs/experiments/paper_sigmoid4.py PSI_D PSI_S (about 8 min on 2 cores; outputs
in docs/experiments/sig4_*.txt were made with 0 0 and 1e-5 1e-4).

Hypothesis check: the paper's code uses a scaled sigmoid, sigmoid(4x). Train with it (the
continuity terms on the torch parameters, as there), then measure the equivalent plain-sigmoid
network (hidden W and b times 4) with error_decay(setup="paper") unchanged otherwise."""
import sys, time
import torch
import neurosim.train as T
import importlib
ED = importlib.import_module("neurosim.experiments.error_decay")
from neurosim import experiments as E

class Sigmoid4(torch.nn.Sigmoid):
    def forward(self, x):
        return torch.sigmoid(4.0 * x)

_orig_module = T._activation_module
def _module(name):
    m = _orig_module(name)
    return Sigmoid4() if type(m) is torch.nn.Sigmoid else m
T._activation_module = _module

_orig_train = ED.train_network
def _train(*a, **k):
    net = _orig_train(*a, **k)
    W = [l.W * (4.0 if l.activation.name == "sigmoid" else 1.0) for l in net.layers]
    b = [l.b * (4.0 if l.activation.name == "sigmoid" else 1.0) for l in net.layers]
    return net.with_weights(W, b)
ED.train_network = _train

pd, ps = float(sys.argv[1]), float(sys.argv[2])
out = f"sig4_{pd:g}_{ps:g}"  # .h5 and .txt in the working directory
t = time.time()
r = E.error_decay(setup="paper", data="mnist5k", widths=(50, 100, 200, 500, 1000), epochs=30,
                  repeats=2, p=1e-2, n_samples=1000, max_inputs=300, progress=False,
                  psi_d=pd, psi_s=ps, lr=3e-3, batch_size=256)
r.save(out + ".h5")
open(out + ".txt", "w").write(r.summary() + f"\n({time.time() - t:.0f} s)\n")
print(r.summary(), flush=True)
