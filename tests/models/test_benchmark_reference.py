"""The benchmarks' reference model (spikingjelly neurons, the authors' BN wrappers) is the authors' model:
with their weights it reproduces their golden logits, so a speed ratio compares equal work."""
import sys
from pathlib import Path

import pytest
import torch

from svformer import load_official

from ..golden import load_golden, model_from_config

pytest.importorskip("spikingjelly.activation_based.neuron")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_model import authors_parts  # noqa: E402


def test_reference_model_reproduces_golden_logits():
    golden = load_golden("official_small.pt")
    model = load_official(model_from_config(golden["config"], **authors_parts(golden["config"]["T"])), golden["state_dict"])
    with torch.no_grad():
        eval_logits = model.eval()(golden["input"])
    train_logits = model.train()(golden["input"])
    for ours, ref in ((eval_logits, golden["logits_eval"]), (train_logits, golden["logits_train"])):
        assert float((ours.detach() - ref).norm() / ref.norm()) < 1e-4
