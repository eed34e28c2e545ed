"""dlbook.distributed.layout: the layout search obeys its rules, its memory model agrees with
section 5.1's calculator, and on GPT-3 175B / 1,024 A100s it lands near Narayanan et al. (2021);
and one layout run for real: a 2 × 2 mesh (FSDP across, TP inside) on 4 processes equals one
process on the full batch (dlbook.distributed.mesh)."""

from __future__ import annotations

import pytest

from dlbook.calc import GPUS, activation_bytes, parameter_count, training_memory
import torch

from dlbook.distributed import layout as LY
from dlbook.distributed import mesh as M
from dlbook.distributed.launch import launch
from dlbook.gpt import GPTConfig


def test_ring_allreduce_time_is_the_alpha_beta_formula():
    assert LY.ring_allreduce_time(1e9, 1, 1e9) == 0.0
    t = LY.ring_allreduce_time(8e9, 8, 100e9, latency=1e-5)
    assert t == pytest.approx(2 * 7 * (1e-5 + 1e9 / 100e9))


def test_memory_of_one_gpu_layout_is_the_calculator():
    c = GPTConfig.gpt2("124M")
    mem = LY.layout_memory(c, 1, 1, 1, micro_batch=4, seq_len=1024, zero_stage=0)
    ref = training_memory(c, 4, 1024, checkpointing="selective", attention_matrix=False)
    assert mem["total"] == pytest.approx(ref.total)
    # TP and PP divide the model states; ZeRO-1 divides the optimizer over DP
    n = parameter_count(c)
    m = LY.layout_memory(c, 4, 2, 3, micro_batch=1, seq_len=1024, zero_stage=1)
    assert m["model states"] == pytest.approx(n * (2 + 2 + 12 / 4) / 6)
    # CP divides the sequence: a flash kernel keeps activations linear in s
    a1 = LY.layout_memory(c, 1, 1, 1, cp=1, seq_len=1024)["activations"]
    a4 = LY.layout_memory(c, 1, 1, 1, cp=4, seq_len=1024)["activations"]
    assert a4 == pytest.approx(activation_bytes(c, 1, 256, checkpointing="selective",
                                                attention_matrix=False))
    assert a4 < a1 / 3.5


def test_propose_layout_obeys_the_rules_and_sorts_by_step_time():
    c = GPTConfig(vocab_size=32000, context_length=4096, d_model=4096, n_layers=32,
                  n_heads=32)
    layouts = LY.propose_layout(c, 64, "H100", global_batch=256, max_cp=4)
    assert layouts, "a 7B model fits on 64 H100s"
    times = [lay.step_time for lay in layouts]
    assert times == sorted(times)
    for lay in layouts:
        assert lay.dp * lay.tp * lay.pp * lay.cp == 64
        assert lay.tp <= 8 and 32 % lay.pp == 0 and 32 % lay.tp == 0
        assert lay.memory <= 0.9 * GPUS["H100"].memory_bytes
        assert 256 % (lay.dp * lay.micro_batch) == 0
        assert lay.bubble == pytest.approx((lay.pp - 1) / lay.n_micro * lay.compute)
    assert any(lay.cp > 1 for lay in layouts)


def test_gpt3_on_1024_a100s_is_close_to_the_published_run():
    c = LY.gpt3_175b()
    assert parameter_count(c) == pytest.approx(174.6e9, rel=1e-3)  # Narayanan's Table 2
    pub = LY.NARAYANAN_2021
    layouts = LY.propose_layout(c, pub["n_gpus"], "A100", pub["global_batch"],
                                checkpointing="full")
    best = layouts[0]
    assert best.tp == pub["tp"]
    assert all(lay.tp * lay.pp > 8 for lay in layouts), "175 B does not fit with TP alone"
    flops = LY.megatron_flops_per_step(c, pub["global_batch"])
    tflops = flops / best.step_time / pub["n_gpus"] / 1e12
    assert 0.8 * pub["tflops"] < tflops < 1.25 * pub["tflops"]
    days = best.step_time * 300e9 / (pub["global_batch"] * pub["seq_len"]) / 86400
    assert 0.8 * pub["days_300b"] < days < 1.25 * pub["days_300b"]
    # the paper's 8TP/(nX) reproduces its own 34 days
    assert 8 * 300e9 * 175e9 / (1024 * 140e12) / 86400 == pytest.approx(34, abs=0.5)


def test_impossible_inputs_raise_value_errors():
    c = LY.gpt3_175b()
    with pytest.raises(ValueError, match="fits in memory"):
        LY.propose_layout(c, 8, "A100", global_batch=8)
    with pytest.raises(ValueError, match="factorisation"):
        LY.propose_layout(c, 1024, "A100", global_batch=3)
    with pytest.raises(ValueError, match="unknown gpu"):
        LY.propose_layout(c, 8, "TPU", global_batch=8)
    with pytest.raises(ValueError, match="positive"):
        LY.propose_layout(c, 0, "A100")
    with pytest.raises(ValueError, match="GPTConfig"):
        LY.propose_layout({"d_model": 1}, 8)
    cl = LY.Cluster(16)
    with pytest.raises(ValueError, match="must equal"):
        LY.estimate_layout(c, cl, 2, 2, 2)
    with pytest.raises(ValueError, match="whole"):
        LY.estimate_layout(c, cl, 2, 8, 1, global_batch=3)


def test_2d_mesh_fsdp_times_tp_equals_one_process():
    results = launch(M.train_2d, 4, steps=3, timeout=120)
    ref = M.train_single(steps=3)
    assert sorted(r["coordinate"] for r in results) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for r in results:
        assert max(abs(a - b) for a, b in zip(r["losses"], ref["losses"])) < 1e-12
        for k, v in ref["final"].items():
            torch.testing.assert_close(r["final"][k], v, rtol=0, atol=1e-12)
    local = results[0]["local"]
    assert local["global shape"] == (64, 16) and local["local shape"] == (16, 16)
    assert ref["losses"][-1] < ref["losses"][0]
