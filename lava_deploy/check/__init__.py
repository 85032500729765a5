"""Check: can a network be deployed on Loihi 2 as it is, and what would a sample cost?

No Lava and no hardware needed: the fit and the lint read the integer network,
the energy estimate counts what the integer reference does on real samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lava_deploy.check.energy import Activity, EnergyEstimate, estimate_energy, measure_activity
from lava_deploy.check.fit import FitReport, fit_network, lint
from lava_deploy.check.limits import LOIHI2, LOIHI_ENERGY, SOURCES, CoreLimits, EnergyCosts
from lava_deploy.network import SpikingNetwork
from lava_deploy.simulate import check_samples, load_network, network_dataset, simulation_inputs

__all__ = ["check", "CheckResult", "fit_network", "lint", "measure_activity", "estimate_energy", "FitReport",
           "Activity", "EnergyEstimate", "CoreLimits", "EnergyCosts", "LOIHI2", "LOIHI_ENERGY", "SOURCES"]


@dataclass
class CheckResult:
    """The fit report, and the energy estimate when samples were simulated."""

    fit: FitReport
    energy: Optional[EnergyEstimate] = None
    dataset: Optional[str] = None

    @property
    def deployable(self) -> bool:
        """True when the network can go onto Loihi 2 as it is."""
        return self.fit.deployable

    def to_dict(self) -> dict:
        """JSON-ready form (``lava-deploy check --json``)."""
        out = {"target": "Loihi 2", **self.fit.to_dict(), "sources": SOURCES}
        if self.energy is not None:
            out["energy"] = {"dataset": self.dataset, **self.energy.to_dict()}
        return out

    def table(self) -> str:
        """The report ``lava-deploy check`` prints."""
        return format_check(self)


def check(network: SpikingNetwork | str | Path, dataset: Optional[str] = None, samples: Optional[int] = None,
          energy: bool = True, limits: CoreLimits = LOIHI2, costs: EnergyCosts = LOIHI_ENERGY) -> CheckResult:
    """Map a network onto Loihi 2 cores, lint its fixed point, and estimate energy on ``dataset``.

    Args:
        network: converted network or netx file path.
        dataset: test samples to count activity on; None: the dataset recorded in the
            network's metadata (one line if it records none and energy is asked for).
        samples: how many test samples to count on (all when None).
        energy: estimate energy (needs a dataset); False: fit and lint only.
        limits, costs: the published figures to check against (Loihi 2's by default).
    """
    check_samples(samples)
    if not isinstance(network, SpikingNetwork):
        network = load_network(network)
    result = CheckResult(fit_network(network, limits))
    if energy:
        dataset = network_dataset(network, dataset)
        codes, _ = simulation_inputs(network, dataset, samples)
        result.energy = estimate_energy(measure_activity(network, codes), costs)
        result.dataset = dataset
    return result


def format_check(result: CheckResult) -> str:
    """Per-layer table, lint, totals and the energy estimate as text."""
    fit = result.fit
    head = (f"{'#':>2}  {'type':<6} {'neurons':>8} {'synapses':>10} {'fan-in':>7} {'fan-out':>8} "
            f"{'weights':<11} {'memory':>10} {'in axons':>8} {'per core':>8} {'cores':>5}  limited by")
    lines = ["Loihi 2 fit (published per-core limits; see docs/loihi2-resources.md)", head, "-" * len(head)]
    for row in fit.layers:
        lines.append(f"{row.index:>2}  {row.kind:<6} {row.neurons:>8} {row.synapses:>10} {row.fan_in:>7} "
                     f"{row.fan_out:>8.1f} {row.weight_precision:<11} {_bytes(row.memory_bytes):>10} "
                     f"{row.input_axons:>8} {row.neurons_per_core:>8} {row.cores:>5}  "
                     + (f"DOES NOT FIT: {row.problem}" if row.problem else
                        f"off the neurocores: {row.needs}" if row.needs else row.limited_by))
    lines.append(f"total: {fit.cores} neurocore(s), {fit.chips} chip(s) of {fit.limits.cores_per_chip} cores")
    lines.append("")
    lines.append("fixed-point lint:")
    lines += [f"  [{f.severity}] " + (f"layer {f.layer}: " if f.layer is not None else "") + f.message
              for f in fit.findings]
    if result.energy is not None:
        lines += ["", *_energy_lines(result.energy, result.dataset, fit.limits)]
    lines += ["", "deployable as is" if fit.deployable else "NOT deployable as is:"]
    lines += [f"  - {p}" for p in fit.problems]
    return "\n".join(lines)


def _energy_lines(energy: EnergyEstimate, dataset: Optional[str], limits: CoreLimits) -> list[str]:
    a, c = energy.activity, energy.costs
    return [
        f"energy and latency per sample ({a.samples} {dataset} test samples, integer reference counts):",
        f"  time steps: {a.steps_per_sample} per sample pipelined ({a.encoding}), latency {a.latency_steps} steps",
        f"  spikes: {a.spikes:.1f} ({a.input_spikes:.1f} input digits + "
        f"{' + '.join(f'{s:.1f}' for s in a.spikes_per_layer)} hidden)",
        f"  payload bits per spike: input {a.payload_bits[0]}, hidden "
        f"{', '.join(str(b) for b in a.payload_bits[1:]) or '-'} (1: binary; limit {limits.message_bits})",
        f"  synaptic operations: {a.synaptic_ops:.0f} x {c.synaptic_op_pj} pJ = {energy.synaptic_nj:.1f} nJ",
        f"  neuron updates: {a.neuron_updates} x {c.neuron_update_pj} pJ = {energy.neuron_nj:.1f} nJ",
        f"  spike messages: {a.spikes:.0f} x {c.spike_pj} pJ = {energy.spike_nj:.2f} nJ",
        *([f"  embedded-core operations (products, function units): {a.unit_operations:.0f} x "
           f"{c.embedded_op_pj} pJ = {energy.unit_nj:.1f} nJ (a lower bound: no published figure)"]
          if a.unit_operations else []),
        f"  total: {energy.total_nj:.1f} nJ  (Loihi figures of Davies et al. 2018; Loihi 2 publishes none per op)",
        f"  same network as a dense ANN: {a.macs} MACs = {energy.ann_fp32_nj:.1f} nJ at fp32 "
        f"({c.mac_fp32_pj} pJ), {energy.ann_int8_nj:.1f} nJ at int8 ({c.mac_int8_pj} pJ) (Horowitz 2014, 45 nm)",
        f"  synaptic operations per ANN MAC: {a.synaptic_ops / max(a.macs, 1):.3f}",
    ]


def _bytes(count: int) -> str:
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} B"
