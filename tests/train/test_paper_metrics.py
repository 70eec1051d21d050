"""The paper-style metrics (docs/method.md, "Metrics") on hand-built nets whose answers are known."""
import json
import math

import numpy as np
import pytest
import torch

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.errors import ConfigError
from lgn_fpga.gates import GATES, PASS_A
from lgn_fpga.netlist import Layer, Netlist
from lgn_fpga.netlist.analysis import analyze, unread_gates, unread_summary
from lgn_fpga.netlist.random import random_netlists
from lgn_fpga.train import loop as L
from lgn_fpga.train.config import resolve_config
from lgn_fpga.train.metrics import time_to_target

G = {g.name: g.id for g in GATES}
ENC = ThermometerEncoding.make((1, 2, 2), 1)     # 4 input bits: signals 0..3


def tiny(**kw):
    base = dict(dataset="digits", layers=2, width=60, steps=20, eval_every=10, batch_size=32, kernel="reference",
                thresholds=1)
    base.update(kw)
    return resolve_config({}, base)


def records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


# -- unread gates ------------------------------------------------------------------------------

def hand_net():
    # g4 = AND(x0, x1), g5 = XOR(x2, x3), g6 = OR(x0, x2), g7 = FALSE
    # g8 = A(g4, g5): reads g4 only; g9 = AND(g7, g6): reads both, but is constant 0 (g7 is FALSE)
    layers = [([G["AND"], G["XOR"], G["OR"], G["FALSE"]], [0, 2, 0, 1], [1, 3, 2, 3]),
              ([G["A"], G["AND"]], [4, 7], [5, 6])]
    return Netlist(ENC, [Layer(*map(np.array, l)) for l in layers], [np.array([8]), np.array([9])]).validate()


def test_unread_gates_on_a_hand_built_net():
    net = hand_net()
    # Only g5 is read by nobody (g8 ignores its b input); g6 and g7 are read by g9, and g8, g9 are outputs.
    assert unread_gates(net).tolist() == [False, True, False, False, False, False]
    assert unread_summary(net) == {"unread_gates": 1, "unread_frac": 1 / 6}
    # The project's measure also drops what only a constant gate reads: g5, g6, g7 and the constant g9.
    assert (~analyze(net).gate_live).tolist() == [False, True, True, True, False, True]


def test_every_unread_gate_is_unused():
    for net in random_netlists(3, 40):
        assert not (unread_gates(net) & analyze(net).gate_live).any()


# -- accuracy as the authors average it, time to target ----------------------------------------------

def test_batch_mean_accuracy_is_a_mean_of_batch_means():
    pred, labels = torch.tensor([1, 1, 1, 0, 0]), torch.ones(5, dtype=torch.long)
    # batches [1, 1], [1, 0], [0]: (1 + 0.5 + 0) / 3, not 3 / 5 over images
    assert L.batch_mean_accuracy(pred, labels, 2) == pytest.approx(0.5)
    assert L.batch_mean_accuracy(pred, labels, 5) == pytest.approx(0.6)
    assert math.isnan(L.batch_mean_accuracy(pred[:0], labels[:0], 2))


def test_time_to_target_first_validation_record_only():
    recs = [{"step": 100, "val_acc_discrete": 0.5, "wall_s": 1.0},
            {"step": 200, "val_acc_discrete": 0.92, "wall_s": 3.0},
            {"step": 300, "val_acc_discrete": 0.95, "wall_s": 4.5},
            {"split": "test", "step": 300, "test_acc_discrete": 0.99}]
    assert time_to_target(recs, 0.9) == {"step": 200, "wall_s": 3.0}
    assert time_to_target(recs, 0.92) == {"step": 200, "wall_s": 3.0}      # reaching counts
    assert time_to_target(recs, 0.99) is None                               # the test record does not count
    assert time_to_target([], 0.1) is None


@pytest.mark.parametrize("value,msg", [(0, "positive"), (1.5, "at most 1"), (90, "at most 1")])
def test_target_acc_must_be_a_fraction(value, msg):
    with pytest.raises(ConfigError, match=f"target_acc.*{msg}"):
        tiny(target_acc=value)


# -- the trainer's records ---------------------------------------------------------------------------

def confident(model, gate=PASS_A, margin=50.0):
    """Every neuron's logit of ``gate`` ``margin`` above the rest: no softmax mass or Gumbel draw moves it."""
    with torch.no_grad():
        for layer in model.layers:
            layer.logits.zero_()
            layer.logits[:, gate] = margin


@pytest.mark.parametrize("recipe", ["softmax", "seed", "scaled"])
def test_confident_net_has_no_gap_and_known_unread(tmp_path, recipe):
    t = L.Trainer(tiny(recipe=recipe), tmp_path / "r", progress=False)
    confident(t.model)
    r = t._evaluate(t.model, t.val_x, t.val_y, 0, 1)
    # The soft mixture, every Gumbel sample and the argmax are one and the same network.
    assert r["gap"] == 0 and r["gap_paper"] == 0 and r["acc_train_mode_paper"] == r["acc_discrete_paper"]
    # Every gate is "A": a gate of layer l is read iff some gate of layer l+1 has it as input a; the last
    # layer feeds the class sums.  Counted here naively, neuron by neuron.
    unread, total = 0, 0
    for lo, hi in zip(t.model.layers[:-1], t.model.layers[1:]):
        readers = set(hi.a.tolist())
        unread += sum(1 for n in range(lo.out_dim) if n not in readers)
    total = sum(l.out_dim for l in t.model.layers)
    assert r["unread_frac"] == pytest.approx(unread / total) and unread > 0


def test_records_carry_paper_metrics_and_noiseless_has_zero_paper_gap(tmp_path):
    t = L.Trainer(tiny(recipe="noiseless", target_acc=0.01), tmp_path / "r", progress=False)
    t.train()
    test = t.test()
    val = records(tmp_path / "r")[:-1]
    for m in val:
        for k in ("val_acc_train_mode_paper", "val_acc_discrete_paper", "gap_paper", "unread_frac"):
            assert k in m
        assert m["gap_paper"] == 0          # no noise: training's forward is the deployed network
        assert m["target_acc"] == 0.01 and m["target_step"] == 10 and m["target_wall_s"] == val[0]["wall_s"]
    assert test["gap_paper"] == 0 and 0 <= test["unread_frac"] <= test["unused_frac"]


def test_target_reached_before_a_resume_stays_reached(tmp_path):
    L.Trainer(tiny(steps=10, target_acc=0.01), tmp_path / "r", progress=False).train()
    t = L.Trainer(tiny(steps=20), tmp_path / "r", resume=True, progress=False)
    t.train()
    last = records(tmp_path / "r")[-1]
    assert last["step"] == 20 and last["target_step"] == 10


def test_unreachable_target_is_null(tmp_path):
    t = L.Trainer(tiny(steps=10, target_acc=1.0), tmp_path / "r", progress=False)
    t.train()
    m = records(tmp_path / "r")[-1]
    assert m["target_step"] is None and m["target_wall_s"] is None
