"""Export: checkpoint -> converted integer network -> netx HDF5 file, or a NIR graph (``export_nir``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import h5py

from lava_deploy.check import fit_network
from lava_deploy.convert import convert_model
from lava_deploy.data import dequantize_input
from lava_deploy.errors import DeployError
from lava_deploy.export.nir_graph import to_nir
from lava_deploy.files import atomic_output, check_output_file
from lava_deploy.network import BIT_SERIAL, INPUT, SpikingNetwork
from lava_deploy.network.netx import read_netx, write_netx
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate import simulation_inputs
from lava_deploy.simulate.nir_rate import read_nir, require_nir
from lava_deploy.train.checkpoint import file_sha256, load_checkpoint
from lava_deploy.train.trainer import evaluate


#: Largest fall of test accuracy from the float network to the integer one that export accepts unasked.
MAX_ACCURACY_DROP = 0.05


def export(checkpoint: str | Path, output: str | Path,
           max_accuracy_drop: Optional[float] = MAX_ACCURACY_DROP, dataset: Optional[str] = None,
           encoding: str = BIT_SERIAL) -> SpikingNetwork:
    """Convert a trained checkpoint and write it as a netx HDF5 file (atomically).

    The file records the source checkpoint's SHA-256, the float QCFS test
    accuracy measured at training (measured here for an imported checkpoint,
    which has none, or on another dataset) and the integer reference's test
    accuracy measured here, so the quantization loss travels with the model. Nothing
    is written that the reader would refuse (chip ranges, 24-bit state) or
    whose integer accuracy collapses against the float one.

    Args:
        checkpoint: a checkpoint written by ``lava-deploy train`` (or :func:`save_checkpoint`).
        output: the netx HDF5 file to write; its folder must exist, and it must not be the checkpoint.
        max_accuracy_drop: refuse a network whose integer test accuracy is lower than the float
            one by more than this (a fraction); None writes it anyway (for experiments).
        dataset: the dataset spec whose test split measures the integer accuracy and which the file
            records; None: the checkpoint's (an imported CIFAR model may record plain ``cifar10``).
        encoding: how the spiking network sends its codes: ``bit-serial`` (T binary spikes per code) or
            ``graded`` (one graded spike per code, one step per layer); the integers are the same.

    Returns:
        The converted network, as written.

    Raises:
        DeployError: bad paths, a damaged checkpoint, a network the chip cannot take, or an
            accuracy collapse (one line naming the layer or the figures).
    """
    check_output_file(output, inputs=[checkpoint])
    network = convert_checkpoint(checkpoint, max_accuracy_drop, dataset).with_encoding(encoding)
    write_netx(network, output)
    return network


def convert_checkpoint(checkpoint: str | Path, max_accuracy_drop: Optional[float] = MAX_ACCURACY_DROP,
                       dataset: Optional[str] = None) -> SpikingNetwork:
    """The integer network of a checkpoint, with its provenance and measured test accuracies (see :func:`export`)."""
    model, info = load_checkpoint(checkpoint)
    metadata = {
        "dataset": dataset or info.dataset,
        "model": info.model,
        "source_checkpoint": Path(checkpoint).name,
        "source_checkpoint_sha256": file_sha256(checkpoint),
        "float_test_accuracy": float(info.metrics.get("float_test_accuracy", float("nan"))),
    }
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names, metadata)
    codes, labels = simulation_inputs(network, metadata["dataset"])
    if "float_test_accuracy" not in info.metrics or metadata["dataset"] != info.dataset:
        # an imported checkpoint records none: the float network measured on the same test samples
        float_accuracy, _ = evaluate(model, dequantize_input(codes, info.input_bits), labels)
        network.metadata["float_test_accuracy"] = float_accuracy
    integer = float((run_reference(network, codes).predictions == labels).mean())
    network.metadata["reference_test_accuracy"] = integer
    drop = network.metadata["float_test_accuracy"] - integer
    if max_accuracy_drop is not None and drop > max_accuracy_drop:
        raise DeployError(f"the integer network's test accuracy {integer:.4f} is {100 * drop:.1f} points below the "
                          f"float network's {network.metadata['float_test_accuracy']:.4f} (more than "
                          f"{100 * max_accuracy_drop:.0f}): not written (--force writes it anyway)")
    return network


def export_nir(model: str | Path, output: str | Path,
               max_accuracy_drop: Optional[float] = MAX_ACCURACY_DROP, dataset: Optional[str] = None) -> SpikingNetwork:
    """Write a network as a NIR graph: the rate-coded reading of its integer weights (approximate; ``docs/nir.md``).

    The file is read back with NIR's own reader before it replaces ``output``,
    so a file that reader refuses is never left behind.

    Args:
        model: a checkpoint (converted as :func:`export` does, with the same accuracy check) or an
            exported netx file.
        output: the NIR (HDF5) file to write.
        max_accuracy_drop: for a checkpoint, as in :func:`export`.
        dataset: for a checkpoint, as in :func:`export`.

    Returns:
        The integer network the graph was made from.

    Raises:
        DeployError: nir missing, bad paths, a damaged input, or a network with no NIR form (one line).
    """
    require_nir()
    import nir
    check_output_file(output, inputs=[model])
    network = read_netx(model) if h5py.is_hdf5(model) else convert_checkpoint(model, max_accuracy_drop, dataset)
    graph = to_nir(network)
    with atomic_output(output) as tmp:
        nir.write(tmp, graph)
        read_nir(tmp)
    return network


def info(network: SpikingNetwork | str | Path) -> dict:
    """What a user needs to know before deploying a network file.

    Returns a dict with the layer table (kind, shapes, fan-in, weight bits and
    exponent, scale, levels, 24-bit headroom), T, the input encoding, latency,
    steps per sample, the recorded provenance and accuracies, and the Loihi 2
    fit in brief (cores, chips, deployable; ``lava-deploy check`` has the rest).
    """
    if not isinstance(network, SpikingNetwork):
        network = read_netx(network)
    fit = fit_network(network)
    return {
        "time_steps": network.time_steps,
        "encoding": network.encoding,
        "input": {"shape": list(network.input_shape), "bits": network.input_bits,
                  "digit_bits": network.input_digit_bits,
                  "encoding": "graded digit planes" if network.input_digit_bits > 1 else "binary bit planes"},
        "layers": layer_summary(network),
        "neurons": sum(layer.num_neurons for layer in network.layers),
        "synapses": sum(layer.num_neurons * layer.fan_in for layer in network.layers),
        "latency_steps": network.latency_steps,
        "steps_per_sample": network.steps_per_sample,
        "classes": list(network.class_names),
        "metadata": dict(network.metadata),
        "loihi2": {"cores": fit.cores, "chips": fit.chips, "deployable": fit.deployable, "problems": fit.problems},
    }


def layer_summary(network: SpikingNetwork) -> list[dict]:
    """One row per layer for ``info``: synapse and neuron kinds, shapes, fan-in, weight bits, exponent, headroom."""
    rows = []
    for i, (layer, spare) in enumerate(zip(network.layers, network.headroom())):
        rows.append({
            "index": i,
            "kind": layer.synapse.kind,
            "input_shape": tuple(layer.synapse.input_shape),
            "output_shape": tuple(layer.output_shape),
            "fan_in": layer.synapse.fan_in,
            "weight_bits": 8,
            "weight_exp": layer.synapse.weight_exp,
            "scale_exp": layer.neuron.scale_exp,
            "levels": layer.levels,
            "headroom_bits": spare,
            "neuron": layer.neuron.kind,
            "source": layer.inputs[0].source,
            "operand": layer.inputs[0].operand,
            "skip_from": next((edge.source for edge in layer.inputs[1:] if edge.source != INPUT), None),
        })
    return rows


def format_info(summary: dict) -> str:
    """:func:`info`'s dict as the table ``lava-deploy info`` prints."""
    head = f"{'#':>2}  {'type':<6} {'input (C,H,W)':<15} {'output':<15} {'fan-in':>7} {'w bits':>6} " \
           f"{'w exp':>5} {'scale':>5} {'L':>3} {'headroom':>8}  inputs"
    lines = [head, "-" * len(head)]
    for row in summary["layers"]:
        levels = "out" if row["neuron"] == "readout" else row["levels"]
        lines.append(f"{row['index']:>2}  {row['kind']:<6} {str(row['input_shape']):<15} "
                     f"{str(row['output_shape']):<15} {row['fan_in']:>7} {row['weight_bits']:>6} "
                     f"{row['weight_exp']:>5} {'2^' + str(row['scale_exp']):>5} {levels:>3} "
                     f"{str(row['headroom_bits']) + ' bits':>8}"
                     + (f"  layer {row['source']}" if row["source"] not in (INPUT, row["index"] - 1) else "")
                     + (f"  x layer {row['operand']}" if row["operand"] is not None else "")
                     + (f"  + layer {row['skip_from']}" if row["skip_from"] is not None else "")
                     + (f"  -> {row['neuron']}" if row["neuron"] not in ("accumulate-emit", "readout") else ""))
    inp = summary["input"]
    pace = (f"pipelined: steps per sample {summary['steps_per_sample']}, latency {summary['latency_steps']} "
            "steps")
    if summary["encoding"] == BIT_SERIAL:
        lines += ["", f"T = {summary['time_steps']} time steps per sample ({pace})",
                  f"input: {inp['shape']}, {inp['bits']}-bit codes as {summary['time_steps']} {inp['encoding']} "
                  f"of {inp['digit_bits']} bit(s), most significant first"]
    else:
        lines += ["", f"T = {summary['time_steps']} bits per code, each code one {summary['encoding']} spike "
                      f"({pace})",
                  f"input: {inp['shape']}, {inp['bits']}-bit codes as one {summary['encoding']} spike each"]
    lines.append(f"neurons: {summary['neurons']}, synaptic connections: {summary['synapses']}")
    loihi2 = summary["loihi2"]
    verdict = "deployable as is" if loihi2["deployable"] else "NOT deployable: " + "; ".join(loihi2["problems"])
    lines.append(f"Loihi 2 (estimate, see lava-deploy check): {loihi2['cores']} neurocore(s) on {loihi2['chips']} "
                 f"chip(s), {verdict}")
    meta = summary["metadata"]
    for key in ("dataset", "float_test_accuracy", "reference_test_accuracy", "source_checkpoint_sha256"):
        if key in meta:
            value = meta[key]
            lines.append(f"{key.replace('_', ' ')}: {value:.4f}" if isinstance(value, float) else
                         f"{key.replace('_', ' ')}: {value}")
    return "\n".join(lines)
