"""Plots of spike and energy analyses (matplotlib, Agg backend: works without a display)."""
from __future__ import annotations

import os
from typing import Dict

from ..plotting import pyplot
from .energy import EnergyReport




def plot_firing_rates(rates: Dict[str, float], path: str, title: str = "Firing rate per spiking layer") -> str:
    plt = pyplot()
    names = list(rates)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(names)), 4))
    ax.bar(range(len(names)), [100 * rates[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("firing rate (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_energy(report: EnergyReport, path: str) -> str:
    """Energy per layer split into MAC and AC parts (stacked bars), with the protocol's total."""
    plt = pyplot()
    rows = [r for r in report.rows if r.energy_pj > 0]
    e_mac, e_ac = report.constants.get("e_mac", 4.6), report.constants.get("e_ac", 0.9)
    names = [r.name for r in rows]
    mac = [r.mac * e_mac * 1e-9 for r in rows]
    ac = [r.ac * e_ac * 1e-9 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(names)), 4.5))
    ax.bar(range(len(names)), mac, label="MAC (non-spike input)", color="tab:red")
    ax.bar(range(len(names)), ac, bottom=mac, label="AC (spike input)", color="tab:green")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("energy per clip (mJ)")
    ax.set_title(f"protocol '{report.protocol}': {report.total_mj:.2f} mJ per clip "
                 f"({report.mac / 1e9:.2f} G MAC, {report.ac / 1e9:.2f} G AC)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_energy_plots(rates: Dict[str, float], report: EnergyReport, out_dir: str) -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    return {"firing_rates": plot_firing_rates(rates, os.path.join(out_dir, "firing_rates.png")),
            "energy": plot_energy(report, os.path.join(out_dir, f"energy_{report.protocol}.png"))}
