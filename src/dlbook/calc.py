"""Back-of-the-envelope numbers for a decoder-only Transformer, before anything runs.

Parameters from the config, FLOPs per token (6N plus the attention term), training compute
6·N·D, bytes of training memory (weights, gradients, optimizer state, activations) and the
time a run takes at a given model FLOPs utilisation. Section 5.1 derives every formula and
checks it against the model; 5.3, Part VI and Part VII reuse them. Nothing here builds a
model: the inputs are a :class:`dlbook.gpt.GPTConfig` and a few numbers.

Conventions: ``b`` batch size, ``s`` sequence length, ``h`` = ``d_model``, ``a`` heads,
``L`` layers, ``V`` vocabulary; FLOPs count a multiply and an add as two.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dlbook import attention as _attention
from dlbook.gpt import GPTConfig

__all__ = ["GPU", "GPUS", "parameter_breakdown", "parameter_count", "flops_per_token",
           "flops_breakdown", "training_flops", "chinchilla_tokens", "chinchilla_optimal",
           "activation_breakdown", "activation_bytes_per_layer", "activation_bytes",
           "MemoryEstimate", "training_memory", "bytes_per_parameter", "training_time",
           "mfu", "estimate_mfu", "kv_cache_bytes", "largest_batch", "matmul_attention",
           "saved_tensor_bytes"]

GB = 1e9
GiB = 2 ** 30


@dataclass(frozen=True)
class GPU:
    """Published peak numbers of one accelerator (dense, i.e. without 2:4 sparsity)."""
    name: str
    memory_bytes: float        # as sold: 80 GB means 80e9 bytes... except where noted
    bf16_flops: float          # dense bf16/fp16 tensor-core peak, FLOP/s
    bandwidth: float           # memory bandwidth, bytes/s
    source: str = ""

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte above which the roofline is flat (compute-bound)."""
        return self.bf16_flops / self.bandwidth


# Vendor datasheets. Memory in bytes as the vendor states it (GB = 1e9 bytes).
GPUS: dict[str, GPU] = {
    "V100": GPU("V100 SXM2 32 GB", 32 * GB, 125e12, 900e9, "NVIDIA V100 datasheet (fp16 tensor)"),
    "A10": GPU("A10 24 GB", 24 * GB, 125e12, 600e9, "NVIDIA A10 datasheet"),
    "A100": GPU("A100 SXM 80 GB", 80 * GB, 312e12, 2.039e12, "NVIDIA A100 datasheet"),
    "H100": GPU("H100 SXM 80 GB", 80 * GB, 989e12, 3.35e12, "NVIDIA H100 datasheet"),
    "H200": GPU("H200 SXM 141 GB", 141 * GB, 989e12, 4.8e12, "NVIDIA H200 datasheet"),
}


def _check_config(config: GPTConfig) -> None:
    if not isinstance(config, GPTConfig):
        raise ValueError("expected a dlbook.gpt.GPTConfig, e.g. GPTConfig.gpt2('124M'), got "
                         f"{type(config).__name__}")


def _positive(name: str, value: float, integer: bool = True) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else \
        isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


# ------------------------------------------------------------------------- parameters

def parameter_breakdown(config: GPTConfig) -> dict[str, int]:
    """Parameters of each part of the model: token and position embeddings, attention, MLP and
    norms summed over the layers, the final norm and the output head (0 when tied)."""
    _check_config(config)
    d, L, V, T = config.d_model, config.n_layers, config.vocab_size, config.context_length
    hd, kv, f = config.head_dim, config.n_kv_heads, config.d_ff
    b = 1 if config.bias else 0
    attn = d * d + 2 * d * kv * hd + d * d + b * (d + 2 * kv * hd + d)   # q, k, v, o
    if config.mlp == "swiglu":
        mlp = 3 * d * f + b * (2 * f + d)
    else:
        mlp = 2 * d * f + b * (f + d)
    norm = d if config.norm == "rmsnorm" else d * (1 + b)
    return {
        "token embedding": V * d,
        "position embedding": T * d if config.positions == "learned" else 0,
        "attention": L * attn,
        "mlp": L * mlp,
        "norms": L * 2 * norm + norm,
        "output head": 0 if config.tie_embeddings else V * d,
    }


def parameter_count(config: GPTConfig, exclude_embeddings: bool = False) -> int:
    """Total parameters (a tied matrix counted once), equal to ``GPT(config).num_parameters()``.
    ``exclude_embeddings`` drops the token and position tables (Kaplan et al.'s N); an untied
    output head is compute, so it stays."""
    parts = parameter_breakdown(config)
    n = sum(parts.values())
    if exclude_embeddings:
        n -= parts["token embedding"] + parts["position embedding"]
    return n


# ------------------------------------------------------------------------------ FLOPs

def flops_breakdown(config: GPTConfig, seq_len: int | None = None) -> dict[str, float]:
    """Forward FLOPs per token, by part, for a sequence of ``seq_len`` tokens (default: the
    context length). The weight matmuls cost 2 FLOPs per weight; attention's two matmuls
    (QKᵀ and the weighted sum of V) cost 2·s·h each per token and layer, counted for the full
    s × s matrix as the PaLM paper does (a causal kernel that skips the upper half does less).
    Norms, softmax and activations (a few FLOPs per value) are left out."""
    _check_config(config)
    s = config.context_length if seq_len is None else seq_len
    _positive("seq_len", s)
    parts = parameter_breakdown(config)
    d, L, V = config.d_model, config.n_layers, config.vocab_size
    return {
        "attention projections": 2.0 * parts["attention"],
        "mlp": 2.0 * parts["mlp"],
        "attention scores and values": 2.0 * 2 * L * s * d,
        "output head": 2.0 * V * d,
    }


def flops_per_token(config: GPTConfig, seq_len: int | None = None, *, training: bool = True,
                    attention: bool = True, output_head: bool = True) -> float:
    """FLOPs per token: forward 2·N + 4·L·s·h, training three times that (the backward pass
    costs two forwards), i.e. 6·N + 12·L·s·h (PaLM, appendix B). N here is the non-embedding
    parameters plus the output head's matmul (``output_head``), biases and norms included."""
    parts = flops_breakdown(config, seq_len)
    f = parts["attention projections"] + parts["mlp"]
    if attention:
        f += parts["attention scores and values"]
    if output_head:
        f += parts["output head"]
    return 3.0 * f if training else f


def training_flops(n_params: float, n_tokens: float) -> float:
    """Compute of a training run, C ≈ 6·N·D (Kaplan et al. 2020): 2 FLOPs per parameter and
    token forward, 4 backward."""
    _positive("n_params", n_params, integer=False)
    _positive("n_tokens", n_tokens, integer=False)
    return 6.0 * n_params * n_tokens


def chinchilla_tokens(n_params: float, tokens_per_parameter: float = 20.0) -> float:
    """Compute-optimal training tokens for a model of ``n_params`` (Hoffmann et al. 2022: about
    20 tokens per parameter)."""
    _positive("n_params", n_params, integer=False)
    return tokens_per_parameter * n_params


def chinchilla_optimal(compute: float, tokens_per_parameter: float = 20.0) -> tuple[float, float]:
    """(N, D) that spend ``compute`` FLOPs with D = 20·N: C = 6·N·20·N, so N = √(C / 120)."""
    _positive("compute", compute, integer=False)
    n = math.sqrt(compute / (6.0 * tokens_per_parameter))
    return n, tokens_per_parameter * n


# ------------------------------------------------------------------------ activations

def activation_breakdown(seq_len: int, batch_size: int, d_model: int, n_heads: int, *,
                         d_ff: int | None = None, bytes_per_value: int = 2,
                         dropout: bool = True, attention_matrix: bool = True,
                         mask_bytes: int = 1, lse_bytes: int = 4) -> dict[str, int]:
    """Bytes one Transformer layer keeps for its backward pass, term by term, following
    Korthikanti et al. (2022), section 4.1. With the defaults (16-bit values, 1-byte dropout
    masks, d_ff = 4h, the s × s attention matrix stored) the terms add up to their
    s·b·h·(34 + 5·a·s/h). ``dropout=False`` drops the masks and the dropped-out copies;
    ``attention_matrix=False`` is a fused (flash) kernel that keeps only the output and one
    log-sum-exp per row and head instead of the probabilities."""
    for name, v in (("seq_len", seq_len), ("batch_size", batch_size), ("d_model", d_model),
                    ("n_heads", n_heads), ("bytes_per_value", bytes_per_value)):
        _positive(name, v)
    f = 4 * d_model if d_ff is None else d_ff
    _positive("d_ff", f)
    sbh, v = seq_len * batch_size * d_model, bytes_per_value
    ass = n_heads * seq_len * seq_len * batch_size
    terms = {
        "layer norm inputs": 2 * v * sbh,
        "q, k, v projection input": v * sbh,
        "queries and keys": 2 * v * sbh,
        "values": v * sbh,
        "output projection input": v * sbh,
        "mlp input": v * sbh,
        "mlp hidden (activation input)": v * seq_len * batch_size * f,
        "mlp hidden (activation output)": v * seq_len * batch_size * f,
    }
    if attention_matrix:
        terms["softmax output"] = v * ass
        if dropout:
            terms["attention dropout mask"] = mask_bytes * ass
            terms["attention dropout output"] = v * ass
    else:
        terms["log-sum-exp per row"] = lse_bytes * n_heads * seq_len * batch_size
    if dropout:
        terms["dropout masks (attention and mlp outputs)"] = 2 * mask_bytes * sbh
    return terms


def activation_bytes_per_layer(seq_len: int, batch_size: int, d_model: int, n_heads: int,
                               **options) -> int:
    """Sum of :func:`activation_breakdown`: s·b·h·(34 + 5·a·s/h) bytes with its defaults."""
    return sum(activation_breakdown(seq_len, batch_size, d_model, n_heads, **options).values())


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int | None = None, *,
                     bytes_per_value: int = 2, checkpointing: str = "none",
                     attention_matrix: bool = True) -> int:
    """Activation bytes of the whole model for one micro-batch.

    ``checkpointing``: "none" keeps every layer's tensors; "full" keeps only each layer's
    input (s·b·h values) plus one layer's full set while it is recomputed; "selective"
    recomputes only the attention matrix (Korthikanti et al.: 34·s·b·h per layer). Beyond the
    layers: the embedding output, the final norm's input and the output head's input (16-bit),
    and the logits kept in fp32 for the loss (4·s·b·V)."""
    _check_config(config)
    s = config.context_length if seq_len is None else seq_len
    _positive("batch_size", batch_size)
    _positive("seq_len", s)
    if checkpointing not in ("none", "full", "selective"):
        raise ValueError(f"checkpointing must be 'none', 'full' or 'selective', got "
                         f"{checkpointing!r}")
    dropout = config.dropout > 0
    # SwiGLU keeps two hidden-width tensors per activation slot (gate and up), GELU one
    hidden = 2 * config.d_ff if config.mlp == "swiglu" else config.d_ff
    opts = dict(d_ff=hidden, bytes_per_value=bytes_per_value, dropout=dropout)
    layer = activation_bytes_per_layer(s, batch_size, config.d_model, config.n_heads,
                                       attention_matrix=attention_matrix, **opts)
    if checkpointing == "selective":
        layer = activation_bytes_per_layer(s, batch_size, config.d_model, config.n_heads,
                                           attention_matrix=False, lse_bytes=0, **opts)
    sbh = s * batch_size * config.d_model
    extra = 3 * bytes_per_value * sbh + 4 * s * batch_size * config.vocab_size
    if checkpointing == "full":
        return config.n_layers * bytes_per_value * sbh + layer + extra
    return config.n_layers * layer + extra


# ----------------------------------------------------------------------------- memory

def bytes_per_parameter(precision: str = "mixed", optimizer: str = "adam") -> dict[str, int]:
    """Bytes per parameter of model state (Rajbhandari et al. 2020, ZeRO, section 3.1).

    Mixed precision with Adam: 2 (bf16/fp16 weights) + 2 (gradients) + 12 (fp32 master
    weights, momentum, variance) = 16. fp32 with Adam: 4 + 4 + 8 = 16 as well."""
    if precision not in ("mixed", "fp32"):
        raise ValueError(f"precision must be 'mixed' or 'fp32', got {precision!r}")
    state = {"adam": 8, "adamw": 8, "sgd_momentum": 4, "sgd": 0}
    if optimizer not in state:
        raise ValueError(f"optimizer must be one of {list(state)}, got {optimizer!r}")
    if precision == "mixed":
        return {"weights": 2, "gradients": 2, "optimizer": 4 + state[optimizer]}
    return {"weights": 4, "gradients": 4, "optimizer": state[optimizer]}


@dataclass
class MemoryEstimate:
    """Bytes of one training step on one device, by kind."""
    weights: float
    gradients: float
    optimizer: float
    activations: float
    details: dict = field(default_factory=dict)

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations

    def fits(self, memory_bytes: float, usable: float = 0.9) -> bool:
        """True when the total is under ``usable`` of the device's memory (the rest goes to
        the framework, its workspace and fragmentation)."""
        return self.total <= usable * memory_bytes

    def __str__(self) -> str:
        rows = [("weights", self.weights), ("gradients", self.gradients),
                ("optimizer", self.optimizer), ("activations", self.activations),
                ("total", self.total)]
        return "\n".join(f"{k:<12}{v / GB:10.2f} GB" for k, v in rows)


def training_memory(config: GPTConfig, batch_size: int, seq_len: int | None = None, *,
                    precision: str = "mixed", optimizer: str = "adam",
                    checkpointing: str = "none", attention_matrix: bool = False,
                    zero_stage: int = 0, n_devices: int = 1) -> MemoryEstimate:
    """Memory of a training step per device: model states from :func:`bytes_per_parameter`
    (optionally sharded over ``n_devices`` by ZeRO stage 1: optimizer, 2: + gradients,
    3: + weights) and activations from :func:`activation_bytes` for a micro-batch of
    ``batch_size``. ``attention_matrix=False`` assumes a flash kernel (the default on GPUs
    today)."""
    _check_config(config)
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    _positive("n_devices", n_devices)
    n = parameter_count(config)
    per = bytes_per_parameter(precision, optimizer)
    shard = {k: (n_devices if zero_stage >= stage else 1)
             for k, stage in (("optimizer", 1), ("gradients", 2), ("weights", 3))}
    act = activation_bytes(config, batch_size, seq_len,
                           bytes_per_value=2 if precision == "mixed" else 4,
                           checkpointing=checkpointing, attention_matrix=attention_matrix)
    return MemoryEstimate(weights=n * per["weights"] / shard["weights"],
                          gradients=n * per["gradients"] / shard["gradients"],
                          optimizer=n * per["optimizer"] / shard["optimizer"],
                          activations=act,
                          details={"parameters": n, "bytes_per_parameter": per,
                                   "zero_stage": zero_stage, "n_devices": n_devices})


def largest_batch(config: GPTConfig, memory_bytes: float, seq_len: int | None = None,
                  usable: float = 0.9, **options) -> int:
    """The largest micro-batch whose :func:`training_memory` fits (0 if not even one)."""
    def fits(b: int) -> bool:
        return training_memory(config, b, seq_len, **options).fits(memory_bytes, usable)
    if not fits(1):
        return 0
    hi = 1
    while fits(2 * hi):
        hi *= 2
        if hi > 2 ** 24:
            return hi
    lo, hi = hi, 2 * hi          # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def kv_cache_bytes(config: GPTConfig, batch_size: int, seq_len: int,
                   bytes_per_value: int = 2) -> int:
    """Bytes of the key/value cache: 2 (keys and values) · L · kv heads · head size · s · b."""
    _check_config(config)
    _positive("batch_size", batch_size)
    _positive("seq_len", seq_len)
    return (2 * config.n_layers * config.n_kv_heads * config.head_dim * seq_len * batch_size
            * bytes_per_value)


# ------------------------------------------------------------------------------- time

def training_time(total_flops: float, peak_flops: float, mfu: float = 0.4,
                  n_devices: int = 1) -> float:
    """Seconds to do ``total_flops`` on ``n_devices`` accelerators of ``peak_flops`` each,
    running at model FLOPs utilisation ``mfu``: C / (n · peak · MFU)."""
    _positive("total_flops", total_flops, integer=False)
    _positive("peak_flops", peak_flops, integer=False)
    _positive("n_devices", n_devices)
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu is a fraction of the peak in (0, 1], got {mfu!r}")
    return total_flops / (n_devices * peak_flops * mfu)


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the FLOPs the model needs per second at this throughput over
    the hardware's peak (Chowdhery et al. 2022). Recomputation does not count as useful."""
    _positive("tokens_per_second", tokens_per_second, integer=False)
    _positive("flops_per_token", flops_per_token, integer=False)
    _positive("peak_flops", peak_flops, integer=False)
    return tokens_per_second * flops_per_token / peak_flops


def estimate_mfu(config: GPTConfig, n_params: int, seq_len: int, sequences_per_step: int,
                 seconds_per_step: float, peak_flops: float = 312e12) -> float:
    """nanoGPT's ``estimate_mfu`` written out: 6·N + 12·L·H·Q·T FLOPs per token (N without
    the position table, H heads of size Q), times the tokens of a step, over the step time,
    over the peak (A100 bf16 by default)."""
    _check_config(config)
    L, H, Q, T = config.n_layers, config.n_heads, config.head_dim, seq_len
    per_token = 6 * n_params + 12 * L * H * Q * T
    achieved = per_token * T * sequences_per_step / seconds_per_step
    return achieved / peak_flops


def _matmul_sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        scores = scores.masked_fill(~_attention.causal_mask(L, S, device=q.device), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores, dim=-1) @ v


@contextlib.contextmanager
def matmul_attention() -> Iterator[None]:
    """Inside this block ``F.scaled_dot_product_attention`` is the textbook
    softmax(QKᵀ/√d)·V written with matmuls (same arguments; dropout and other options go to
    PyTorch's), so that ``FlopCounterMode`` sees the two attention matmuls and autograd keeps
    the s × s probabilities, as the formulas assume. PyTorch's fused CPU kernel is counted as
    0 FLOPs and saves only a log-sum-exp per row instead."""
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if dropout_p or kwargs:
            return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                            is_causal=is_causal, scale=scale, **kwargs)
        return _matmul_sdpa(q, k, v, attn_mask, is_causal, scale)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def saved_tensor_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()
                       ) -> tuple[int, Any, list[tuple[tuple[int, ...], torch.dtype, int]]]:
    """Run ``fn()`` and count the bytes autograd saves for the backward pass, each storage
    once (views of one tensor share it), leaving out the tensors in ``exclude`` (pass the
    model's parameters: weights are kept anyway, they are not activations). Returns
    (bytes, what fn returned, [(shape, dtype, bytes) of each counted storage])."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: set[int] = set()
    rows: list[tuple[tuple[int, ...], torch.dtype, int]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in skip:
            seen.add(key)
            rows.append((tuple(t.shape), t.dtype, storage.nbytes()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(r[2] for r in rows), out, rows
