"""Export: checkpoint -> converted integer network -> netx HDF5 file."""
from __future__ import annotations

from pathlib import Path

from lava_deploy.convert import convert_model
from lava_deploy.convert.network import SpikingNetwork
from lava_deploy.simulate.reference import run_reference
from lava_deploy.train.checkpoint import file_sha256, load_checkpoint


def export(checkpoint: str | Path, output: str | Path) -> SpikingNetwork:
    """Convert a trained checkpoint and write it as a netx HDF5 file (atomically).

    The file records the source checkpoint's SHA-256, the float QCFS test
    accuracy measured at training and the integer reference's test accuracy
    measured here, so the quantization loss travels with the model.

    Returns:
        The converted network, as written.
    """
    from lava_deploy.export.netx import write_netx
    from lava_deploy.simulate import simulation_inputs

    model, info = load_checkpoint(checkpoint)
    metadata = {
        "dataset": info.dataset,
        "model": info.model,
        "source_checkpoint": Path(checkpoint).name,
        "source_checkpoint_sha256": file_sha256(checkpoint),
        "float_test_accuracy": float(info.metrics.get("float_test_accuracy", float("nan"))),
    }
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names, metadata)
    codes, labels = simulation_inputs(network, info.dataset)
    network.metadata["reference_test_accuracy"] = float((run_reference(network, codes).predictions == labels).mean())
    write_netx(network, output)
    return network
