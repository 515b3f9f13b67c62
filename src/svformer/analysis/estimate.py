"""One entry point for energy estimates: from measured spikes or from a firing-rates file."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from typing import Dict, Iterable, Mapping

import torch
from torch import nn

from .complexity import count_parameters
from .energy import PROTOCOLS, EnergyReport, neurobench_metrics, with_rates
from .operations import OperationCounter, trace_operations

AUTHORS_UCF101 = "authors-ucf101"


@dataclass
class EnergyEstimate:
    reports: Dict[str, EnergyReport]
    rates: Dict[str, float]
    neurobench: dict
    source: str

    def summary(self) -> dict:
        """{protocol: {total_mJ, mac_G, ac_G, ...}} plus the SNN/ANN energy ratio and NeuroBench metrics."""
        out = {name: r.summary() for name, r in self.reports.items()}
        out["ann_to_snn_energy_ratio"] = self.reports["dense_ann"].total_pj / self.reports["paper"].total_pj
        out["neurobench"] = self.neurobench
        out["firing_rates"] = self.rates
        out["source"] = self.source
        return out

    def to_json(self, path: str) -> None:
        data = self.summary()
        data["layers"] = {name: r.to_dict()["layers"] for name, r in self.reports.items()}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)


def load_rates(path: str) -> Dict[str, float]:
    """A rates file: JSON ``{layer: rate}`` or ``{"rates": {layer: rate}}``; ``authors-ucf101`` names the
    authors' logged UCF101 rates shipped with svformer."""
    if path == AUTHORS_UCF101:
        text = resources.files("svformer.analysis").joinpath("data/authors_ucf101_rates.json").read_text()
        origin = "authors_ucf101_rates.json"
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"firing-rates file not found: {path}")
        with open(path) as f:
            text = f.read()
        origin = path
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{origin}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("rates"), dict):
        data = data["rates"]
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a JSON object mapping layer names to rates")
    return data


def _estimate(records, rates, params, source) -> EnergyEstimate:
    reports = {name: fn(records) for name, fn in PROTOCOLS.items()}
    return EnergyEstimate(reports, rates, neurobench_metrics(records, params), source)


def estimate_from_rates(model: nn.Module, input_shape, rates: Mapping[str, float],
                        origin: str = "rates") -> EnergyEstimate:
    """Energy per clip from shapes (a forward on the meta device) and given per-layer firing rates."""
    records = with_rates(trace_operations(model, input_shape), rates, origin)
    table = {r.name: next(op.rate for rr in records for op in rr.operands if op.source == r.name)
             for r in records if r.kind == "neuron"}
    return _estimate(records, table, count_parameters(model), origin)


def estimate_from_data(model: nn.Module, clips: Iterable[torch.Tensor], device="cpu") -> EnergyEstimate:
    """Energy per clip measured on real inputs: every op's input rate is the mean of its actual input."""
    model = model.to(device).eval()
    with torch.no_grad(), OperationCounter(model) as counter:
        for clip in clips:
            model(clip.to(device))
    records = counter.records()
    rates = {}
    for rec in records:
        for op in rec.operands:
            if op.spike:
                rates.setdefault(op.source, op.rate)
    ordered = {r.name: rates.get(r.name, 0.0) for r in records if r.kind == "neuron"}
    return _estimate(records, ordered, count_parameters(model), "measured")


def format_table(estimate: EnergyEstimate, protocol: str = "paper") -> str:
    report = estimate.reports[protocol]
    lines = [f"{'layer':<32}{'kind':<8}{'in rate':>9}{'MAC (M)':>12}{'AC (M)':>12}{'mJ':>10}"]
    for r in report.rows:
        rate = "" if r.input_rate is None else f"{100 * r.input_rate:.2f}%"
        lines.append(f"{r.name:<32}{r.kind:<8}{rate:>9}{r.mac / 1e6:>12.2f}{r.ac / 1e6:>12.2f}"
                     f"{r.energy_pj * 1e-9:>10.4f}")
    lines.append("")
    lines.append(f"{'protocol':<12}{'total mJ':>10}{'MAC G':>10}{'AC G':>10}")
    for name, rep in estimate.reports.items():
        lines.append(f"{name:<12}{rep.total_mj:>10.3f}{rep.mac / 1e9:>10.3f}{rep.ac / 1e9:>10.3f}")
    s = estimate.summary()
    nb = s["neurobench"]
    lines.append(f"dense ANN / SNN (paper) energy: {s['ann_to_snn_energy_ratio']:.2f}x; activation sparsity "
                 f"{nb['activation_sparsity']:.4f}; parameters {nb['parameter_count']:,}")
    return "\n".join(lines)
