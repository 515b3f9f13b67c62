"""Energy protocols for spiking networks, each a named function with its constants as parameters.

All take the per-clip `OpRecord`s of `operations.py` and return an `EnergyReport` (per-layer rows and
totals, in operations and millijoules). The rule common to all of them, as the SVFormer authors intended
it (docs/energy.md): a conv/linear whose input is a spike tensor performs accumulates (AC)
only for the input spikes, AC = dense ops x input firing rate; any other input makes it a
multiply-accumulate (MAC) layer, counted densely. Dense ops include one addition per output element for
a bias, as the authors' counter did.

Protocols:
- `paper`: E = e_mac x MAC + e_ac x AC over conv and linear layers only, with 4.6 pJ and 0.9 pJ
  (32-bit float multiply-add and add at 45 nm, Horowitz, ISSCC 2014). This is what the authors' counter
  was meant to compute; see docs/energy.md for why their logged counts differ.
- `full`: `paper` plus what it leaves out: the attention products Q (K^T V) (K^T V: ACs = the coinciding
  spikes, measured, or dense x min(rate_K, rate_V) from rates alone, the SSA formula of Spikformer-style
  papers; Q x context: ACs = dense x rate_Q), BatchNorm (``bn_ops`` MACs per element; 1 = a scale and
  shift, 0 if folded into the previous conv) and neuron updates (one MAC per element and time step for
  the leak multiply and charge).
- `memory`: `full` plus memory traffic, after Lemaire et al., "An analytical estimation of spiking
  neural networks energy efficiency", ICONIP 2022: every synaptic operation (AC or MAC) reads its weight,
  every neuron update reads and writes its membrane potential, and every layer output is written once,
  each access to a local SRAM costing ``e_read``/``e_write`` pJ (default 5 pJ for a 32-bit word of an 8 KB
  SRAM at 45 nm, Horowitz 2014). Weight reuse and data-flow scheduling are ignored, so this is an upper
  bound of the on-chip traffic, as in that paper.
- `dense_ann`: the same network run as an ANN: every conv/linear/matmul dense op a MAC at e_mac.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Mapping, Optional

from ..models.official import official_to_svformer_key
from .operations import OpRecord

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
E_SRAM_PJ = 5.0


@dataclass
class EnergyRow:
    name: str
    kind: str
    mac: float
    ac: float
    energy_pj: float
    input_rate: Optional[float] = None


@dataclass
class EnergyReport:
    protocol: str
    rows: List[EnergyRow]
    extra_pj: float = 0.0
    constants: Dict[str, float] = field(default_factory=dict)

    @property
    def mac(self) -> float:
        return sum(r.mac for r in self.rows)

    @property
    def ac(self) -> float:
        return sum(r.ac for r in self.rows)

    @property
    def total_pj(self) -> float:
        return sum(r.energy_pj for r in self.rows) + self.extra_pj

    @property
    def total_mj(self) -> float:
        return self.total_pj * 1e-9

    def summary(self) -> dict:
        return {"total_mJ": self.total_mj, "mac_G": self.mac / 1e9, "ac_G": self.ac / 1e9,
                "memory_mJ": self.extra_pj * 1e-9, "constants_pJ": self.constants}

    def to_dict(self) -> dict:
        return {**self.summary(), "layers": [asdict(r) for r in self.rows]}


def _input_rate(rec: OpRecord) -> float:
    return next((op.rate for op in rec.operands if op.spike), 1.0)


def _synaptic_rows(records, e_mac, e_ac, include_matmul) -> List[EnergyRow]:
    rows = []
    for rec in records:
        if rec.kind in ("conv", "linear"):
            ops = rec.dense + rec.bias
            if rec.spike_input:
                rate = _input_rate(rec)
                rows.append(EnergyRow(rec.name, rec.kind, 0.0, ops * rate, ops * rate * e_ac, rate))
            else:
                rows.append(EnergyRow(rec.name, rec.kind, ops, 0.0, ops * e_mac))
        elif rec.kind == "matmul" and include_matmul:
            spikes = [op for op in rec.operands if op.spike]
            if len(spikes) == 2:
                ac = rec.coincident if rec.coincident is not None else rec.dense * min(op.rate for op in spikes)
                rows.append(EnergyRow(rec.name, rec.kind, 0.0, ac, ac * e_ac, min(op.rate for op in spikes)))
            elif len(spikes) == 1:
                ac = rec.dense * spikes[0].rate
                rows.append(EnergyRow(rec.name, rec.kind, 0.0, ac, ac * e_ac, spikes[0].rate))
            else:
                rows.append(EnergyRow(rec.name, rec.kind, rec.dense, 0.0, rec.dense * e_mac))
    return rows


def paper(records: List[OpRecord], e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> EnergyReport:
    """The authors' intended rule: conv and linear layers only, AC for spike inputs, MAC otherwise."""
    return EnergyReport("paper", _synaptic_rows(records, e_mac, e_ac, include_matmul=False),
                        constants={"e_mac": e_mac, "e_ac": e_ac})


def full(records: List[OpRecord], e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, bn_ops: float = 1.0,
         neuron_ops: float = 1.0) -> EnergyReport:
    """`paper` plus the attention products, BatchNorm (bn_ops MACs/element) and neuron updates
    (neuron_ops MACs/element/step)."""
    rows = _synaptic_rows(records, e_mac, e_ac, include_matmul=True)
    for rec in records:
        if rec.kind == "norm" and bn_ops:
            rows.append(EnergyRow(rec.name, "norm", rec.elements * bn_ops, 0.0, rec.elements * bn_ops * e_mac))
        elif rec.kind == "neuron" and neuron_ops:
            rows.append(EnergyRow(rec.name, "neuron", rec.elements * neuron_ops, 0.0,
                                  rec.elements * neuron_ops * e_mac))
    return EnergyReport("full", rows, constants={"e_mac": e_mac, "e_ac": e_ac, "bn_ops": bn_ops,
                                                 "neuron_ops": neuron_ops})


def memory(records: List[OpRecord], e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, e_read: float = E_SRAM_PJ,
           e_write: float = E_SRAM_PJ, bn_ops: float = 1.0, neuron_ops: float = 1.0) -> EnergyReport:
    """`full` plus memory traffic after Lemaire et al. 2022 (see the module docstring)."""
    report = full(records, e_mac, e_ac, bn_ops, neuron_ops)
    synaptic = sum(r.mac + r.ac for r in report.rows if r.kind in ("conv", "linear", "matmul"))
    weight_reads = synaptic * e_read
    state = sum(rec.elements for rec in records if rec.kind == "neuron") * (e_read + e_write)
    outputs = sum(rec.elements for rec in records if rec.kind in ("norm", "neuron")) * e_write
    report.protocol = "memory"
    report.extra_pj = weight_reads + state + outputs
    report.constants.update(e_read=e_read, e_write=e_write)
    return report


def dense_ann(records: List[OpRecord], e_mac: float = E_MAC_PJ) -> EnergyReport:
    """The same network as a conventional ANN: every conv/linear/matmul op is a MAC."""
    rows = [EnergyRow(r.name, r.kind, r.dense + r.bias, 0.0, (r.dense + r.bias) * e_mac)
            for r in records if r.kind in ("conv", "linear", "matmul")]
    return EnergyReport("dense_ann", rows, constants={"e_mac": e_mac})


PROTOCOLS: Dict[str, Callable[..., EnergyReport]] = {
    "paper": paper, "full": full, "memory": memory, "dense_ann": dense_ann,
}


def normalise_rate_names(rates: Mapping[str, float], known: List[str], origin: str = "rates") -> Dict[str, float]:
    """Accept svformer or authors' layer names; values must be rates in [0, 1].

    Raises ValueError for a rate outside [0, 1], a name that is no neuron layer of the model, or a neuron
    layer without a rate.
    """
    out = {}
    for name, rate in rates.items():
        ours = official_to_svformer_key(name + ".")[:-1]
        if ours not in known:
            raise ValueError(f"{origin}: {name!r} is not a neuron layer of this model; known layers: "
                             f"{', '.join(known[:5])}, ... ({len(known)} in all)")
        if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"{origin}: rate of {name!r} must be a number in [0, 1], got {rate!r} "
                             f"(percentages must be divided by 100)")
        out[ours] = float(rate)
    missing = [k for k in known if k not in out]
    if missing:
        raise ValueError(f"{origin}: no rate for {len(missing)} neuron layer(s), first {missing[0]!r}")
    return out


def with_rates(records: List[OpRecord], rates: Mapping[str, float], origin: str = "rates") -> List[OpRecord]:
    """Copy of ``records`` with every spike operand's rate replaced by its source neuron's rate."""
    known = [r.name for r in records if r.kind == "neuron"]
    table = normalise_rate_names(rates, known, origin)
    out = []
    for rec in records:
        operands = [type(op)(op.source, op.spike, table[op.source] if op.spike else op.rate) for op in rec.operands]
        out.append(OpRecord(rec.name, rec.kind, rec.dense, rec.bias, rec.elements, operands, None))
    return out


def neurobench_metrics(records: List[OpRecord], params: int) -> dict:
    """NeuroBench-style complexity metrics (Yik et al., 2024) per clip: activation sparsity (1 - mean
    spike rate over all neuron outputs), synaptic operations (effective ACs and MACs, dense total) and
    the parameter footprint."""
    neurons = [r for r in records if r.kind == "neuron"]
    rate_of = {}
    for rec in records:
        for op in rec.operands:
            if op.spike:
                rate_of[op.source] = op.rate
    elements = sum(r.elements for r in neurons)
    spikes = sum(r.elements * rate_of.get(r.name, 0.0) for r in neurons)
    report = full(records, bn_ops=0, neuron_ops=0)
    dense = sum(r.dense + r.bias for r in records if r.kind in ("conv", "linear", "matmul"))
    return {"activation_sparsity": 1.0 - spikes / elements if elements else None,
            "effective_ACs": report.ac, "effective_MACs": report.mac, "dense_ops": dense,
            "parameter_count": params}
