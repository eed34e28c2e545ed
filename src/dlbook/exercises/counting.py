"""Checks for the exercises of section 5.1, Counting: parameters, FLOPs, bytes and seconds.

A parameter count must be exact; the other answers are estimates from formulas and need the
precision the exercise states (1 % unless it says otherwise), which is far tighter than the
usual slips (2ND instead of 6ND, a forgotten MFU, the s·b·h term without attention, weights
without the optimizer state) change them.
"""

from __future__ import annotations

from typing import Any

from dlbook import calc, check
from dlbook.gpt import GPTConfig

#: the model of exercise ex-count-params: GPT-2's design, 6 layers of width 512
PARAMS_CONFIG = GPTConfig.gpt2(n_layers=6, d_model=512, n_heads=8, vocab_size=32000,
                               context_length=512)
#: exercise ex-count-days: Llama 2 7B on 2 trillion tokens, 1024 A100s at 40 % MFU
DAYS_RUN = dict(n_params=6.74e9, n_tokens=2.0e12, n_gpus=1024, peak=312e12, mfu=0.40)
#: exercise ex-count-activations: one layer, s = 2048, b = 4, h = 4096, a = 32
ACT_SHAPE = dict(seq_len=2048, batch_size=4, d_model=4096, n_heads=32)
#: exercise ex-count-fit: memory of one GPU in bytes
FIT_MEMORY = 80e9


def parameters(answer: Any) -> check.Result:
    """Parameters of ``PARAMS_CONFIG`` (GPT-2's layout, tied embeddings, learned positions,
    biases everywhere): 12·L·d² + 13·L·d + (V + T + 2)·d, exactly."""
    return check.number(answer, calc.parameter_count(PARAMS_CONFIG),
                        name="parameters of the 6-layer model", rtol=0, atol=0,
                        hint="Per layer: four d × d attention matrices and two d × 4d MLP "
                             "matrices, their biases (4d + 4d + d) and two layer norms (2d "
                             "each). Then the token table V × d (used again by the tied output "
                             "head), the position table T × d and the final norm.")


def training_days(answer: Any) -> check.Result:
    """Days to train on ``DAYS_RUN``: 6·N·D / (n · peak · MFU) / 86400, within 1 %."""
    r = DAYS_RUN
    seconds = calc.training_time(calc.training_flops(r["n_params"], r["n_tokens"]), r["peak"],
                                 r["mfu"], r["n_gpus"])
    return check.number(answer, seconds / 86400, name="days of training", rtol=0.01, atol=0,
                        hint="Training compute is 6·N·D FLOPs. The GPUs together deliver "
                             "n · peak · MFU FLOPs per second; divide, then convert seconds "
                             "to days.")


def activation_bytes(answer: Any) -> check.Result:
    """Bytes one layer keeps for ``ACT_SHAPE`` in 16-bit precision with dropout and the stored
    attention matrix: s·b·h·(34 + 5·a·s/h), within 0.1 %."""
    s, b, h, a = (ACT_SHAPE[k] for k in ("seq_len", "batch_size", "d_model", "n_heads"))
    return check.number(answer, calc.activation_bytes_per_layer(s, b, h, a),
                        name="activation bytes of one layer", rtol=1e-3, atol=0,
                        hint="Korthikanti et al.'s count is s·b·h·(34 + 5·a·s/h) bytes: the "
                             "34 is the per-token tensors, the second term the a attention "
                             "matrices of s × s per sequence. Mind the batch.")


def largest_model(answer: Any) -> check.Result:
    """The most parameters whose weights, gradients and Adam state (16 bytes per parameter in
    mixed precision) fit in 80 GB, ignoring activations: 5e9, within 1 %."""
    per = sum(calc.bytes_per_parameter("mixed", "adam").values())
    return check.number(answer, FIT_MEMORY / per, name="largest model in 80 GB", rtol=0.01,
                        atol=0,
                        hint="Count every byte a parameter costs in mixed-precision training "
                             "with Adam: the 16-bit weight and gradient, the fp32 master copy "
                             "and Adam's two fp32 moments.")
