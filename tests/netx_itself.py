"""lava-dl's own run of a stock netx network: the yardstick lava-deploy's stock runs are held to.

netx.hdf5.Network with lava-nc's own process models, fed the way lava-dl's
tests and tutorials feed it: spikes from Lava's RingBuffer source on
``Network.inp``; an input neuron layer through its neurons' ``bias_mant``
(its initial value, then ``Var.set`` between runs wherever it changes);
every block's output into Lava's RingBuffer sink.
Nothing of lava-deploy takes part. Used by the tests and by
benchmarks/stock_netx.py.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np


def run_netx_itself(path: str | Path, *, spikes: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None,
                    steps: Optional[int] = None) -> tuple[list[np.ndarray], float]:
    """Every block's output ``(steps, *shape)`` in netx's order of blocks, and the simulation seconds.

    ``spikes``: ``(steps, *Network.inp.shape)``. ``bias``: ``(steps, *shape)``, or ``shape`` held for ``steps``.
    """
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    network = netx.hdf5.Network(net_config=str(path))
    held = bias is not None and steps is not None
    steps = steps if held else len(spikes if spikes is not None else bias)
    sinks = []
    for block in network.layers:
        sinks.append(io.sink.RingBuffer(shape=block.out.shape, buffer=steps))
        block.out.connect(sinks[-1].a_in)
    if spikes is not None:
        source = io.source.RingBuffer(data=np.moveaxis(spikes, 0, -1))
        source.s_out.connect(network.inp)
    else:
        network.in_layer.neuron.bias_mant.init = bias if held else bias[0]
    config = Loihi2SimCfg(select_tag="fixed_pt")
    network.create_runtime(run_cfg=config)
    try:
        start = time.perf_counter()
        if bias is None or held:
            network.run(condition=RunSteps(num_steps=steps), run_cfg=config)
        else:       # the loop a user writes: a new bias, then as many steps as it holds
            changes = [0] + [t for t in range(1, steps) if not np.array_equal(bias[t], bias[t - 1])] + [steps]
            for first, end in zip(changes[:-1], changes[1:]):
                if first:
                    network.in_layer.neuron.bias_mant.set(bias[first])
                network.run(condition=RunSteps(num_steps=end - first), run_cfg=config)
        seconds = time.perf_counter() - start
        return [np.moveaxis(sink.data.get(), -1, 0).astype(np.int64) for sink in sinks], seconds
    finally:
        network.stop()
