"""GPU-scale measurements of Part V in one place: ``python -m dlbook.bench``.

Three tables, each printed as it is measured:

1. **MFU** of a training step of :class:`dlbook.gpt.GPT` at a few sizes, in float32, with
   bf16 autocast, and with bf16 autocast plus ``torch.compile``; tokens per second and model
   FLOPs utilisation (:func:`dlbook.calc.flops_per_token` over the device's peak).
2. **Peak memory** of that step (``torch.cuda.max_memory_allocated``) against
   :func:`dlbook.calc.training_memory`. On the CPU there is no such counter, so the table
   shows the bytes autograd saves (``calc.saved_tensor_bytes``) against the activation formula.
3. **Attention time against T**, forward and backward, with PyTorch's fused (flash) kernel,
   with the materialising math kernel, and with :func:`dlbook.flash.flash_attention` (the
   book's tiled version, in Python), plus the bytes each keeps for the backward pass.

On a CPU the sizes are small (it runs in well under a minute); on a GPU they are the sizes the
prose of Part V quotes. ``--quick`` shrinks everything further (the tests use it).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from dlbook import calc
from dlbook.gpt import GPT, GPTConfig
from dlbook.utils import device as default_device

# Dense bf16 peaks (FLOP/s) by a substring of torch.cuda.get_device_name(); see dlbook.calc.GPUS.
_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10": 125e12, "V100": 125e12,
          "L4": 121e12, "4090": 165e12, "T4": 65e12}


def sync(device: torch.device) -> None:
    """Wait for the device to finish its queued work (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int = 5,
              warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_flops(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> tuple[float, str]:
    """The device's peak FLOP/s and where the number comes from: the datasheet value for a
    known GPU, or a measured large matmul on anything else (a CPU's "peak" is what its BLAS
    reaches, not a datasheet number)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in _PEAKS.items():
            if key in name:
                return value, f"{name}, datasheet dense bf16"
    n = 1024 if device.type != "cpu" else 512
    a = torch.randn(n, n, device=device, dtype=torch.float32 if device.type == "cpu" else dtype)
    b = torch.randn_like(a)
    seconds = time_call(lambda: a @ b, device, repeats=5)
    return 2 * n ** 3 / seconds, f"measured {a.dtype} matmul {n}x{n}"


def _sizes(device: torch.device, quick: bool) -> list[tuple[str, GPTConfig, int, int]]:
    """(name, config, batch, seq) for the MFU table."""
    if device.type == "cuda" and not quick:
        return [(f"GPT-2 {s}", GPTConfig.gpt2(s), b, 1024)
                for s, b in (("124M", 16), ("355M", 8), ("774M", 4))]
    if quick:
        return [("tiny", GPTConfig.gpt2(n_layers=2, d_model=64, n_heads=4, vocab_size=256,
                                        context_length=64), 4, 64)]
    return [(f"d={d}, L={L}", GPTConfig.gpt2(n_layers=L, d_model=d, n_heads=d // 64,
                                              vocab_size=4096, context_length=256), 4, 256)
            for d, L in ((128, 4), (256, 4), (512, 4))]


def _step_fn(model: torch.nn.Module, idx: torch.Tensor, autocast: bool,
             device: torch.device) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=False)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast else \
        contextlib.nullcontext
    # PyTorch's fused bf16 attention for the CPU needs AVX-512; the textbook version runs anywhere
    attn = calc.matmul_attention if autocast and device.type == "cpu" else contextlib.nullcontext

    def step() -> None:
        with ctx(), attn():
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def mfu_table(device: torch.device, quick: bool = False, compile: bool = True) -> list[dict]:
    """Tokens per second and MFU of one training step per size and mode."""
    peak, source = peak_flops(device)
    print(f"\n## MFU of a training step (peak {peak / 1e12:.1f} TFLOP/s: {source})")
    if device.type == "cpu":
        print("(bf16 rows on the CPU compute attention with matrix products: the fused bf16 "
              "kernel needs AVX-512)")
    print(f"{'model':<14}{'params':>9}  {'mode':<22}{'tokens/s':>11}{'MFU':>8}")
    rows = []
    modes = [("fp32", False, False), ("bf16 autocast", True, False)]
    if compile:
        modes.append(("bf16 + compile", True, True))
    for name, cfg, batch, seq in _sizes(device, quick):
        n = calc.parameter_count(cfg)
        fpt = calc.flops_per_token(cfg, seq)
        for mode, autocast, compiled in modes:
            torch.manual_seed(0)
            model = GPT(cfg).to(device)
            if compiled:
                model = torch.compile(model)
            idx = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
            step = _step_fn(model, idx, autocast, device)
            try:
                seconds = time_call(step, device, repeats=2 if quick else 5,
                                    warmup=2 if compiled else 1)
            except Exception as err:           # e.g. no C++ compiler for inductor on a CPU
                print(f"{name:<14}{n / 1e6:>8.1f}M  {mode:<22}  skipped: "
                      f"{type(err).__name__}")
                continue
            tps = batch * seq / seconds
            u = calc.mfu(tps, fpt, peak)
            rows.append(dict(model=name, params=n, mode=mode, tokens_per_s=tps, mfu=u))
            print(f"{name:<14}{n / 1e6:>8.1f}M  {mode:<22}{tps:>11.0f}{u:>8.1%}")
            del model, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def memory_table(device: torch.device, quick: bool = False) -> list[dict]:
    """Peak memory of a bf16-autocast training step against the calculator (CUDA), or saved
    activation bytes against the formula (CPU)."""
    rows = []
    if device.type == "cuda":
        print("\n## Peak memory of a training step (AdamW, fp32 weights, bf16 autocast)")
        print(f"{'model':<14}{'batch':>6}{'measured GB':>13}{'predicted GB':>14}{'ratio':>8}")
        for name, cfg, batch, seq in _sizes(device, quick):
            torch.manual_seed(0)
            model = GPT(cfg).to(device)
            idx = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
            step = _step_fn(model, idx, True, device)
            step()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            measured = torch.cuda.max_memory_allocated(device)
            # fp32 weights and gradients with AdamW: 16 bytes per parameter; activations
            # mostly bf16 with PyTorch's flash kernel (no s × s matrix)
            pred = calc.training_memory(cfg, batch, seq, precision="fp32",
                                        attention_matrix=False)
            predicted = pred.model_states + calc.activation_bytes(
                cfg, batch, seq, bytes_per_value=2, attention_matrix=False)
            rows.append(dict(model=name, batch=batch, measured=measured, predicted=predicted))
            print(f"{name:<14}{batch:>6}{measured / 1e9:>13.2f}{predicted / 1e9:>14.2f}"
                  f"{measured / predicted:>8.2f}")
            del model, step
            torch.cuda.empty_cache()
        return rows
    print("\n## Saved activations of one block (no CUDA memory counter on this device)")
    print(f"{'s':>6}{'b':>4}{'h':>6}{'a':>4}{'saved MB':>11}{'formula MB':>12}{'ratio':>8}")
    from dlbook.gpt import Block
    shapes = [(64, 2, 64, 4)] if quick else [(64, 2, 64, 4), (128, 2, 128, 4), (256, 1, 128, 8)]
    for s, b, h, a in shapes:
        torch.manual_seed(0)
        block = Block(GPTConfig.gpt2(n_layers=1, d_model=h, n_heads=a, context_length=s,
                                     vocab_size=10)).to(device)
        x = torch.randn(b, s, h, device=device, requires_grad=True)
        with calc.matmul_attention():
            saved, _, _ = calc.saved_tensor_bytes(lambda: block(x * 1.0),
                                                  exclude=block.parameters())
        formula = calc.activation_bytes_per_layer(s, b, h, a, bytes_per_value=4, dropout=False)
        rows.append(dict(s=s, b=b, h=h, a=a, measured=saved, predicted=formula))
        print(f"{s:>6}{b:>4}{h:>6}{a:>4}{saved / 1e6:>11.2f}{formula / 1e6:>12.2f}"
              f"{saved / formula:>8.3f}")
    return rows


def attention_table(device: torch.device, quick: bool = False) -> list[dict]:
    """Forward + backward time of attention against sequence length, by kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from dlbook import flash
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    B, H, D = (4, 16, 64) if cuda else (1, 4, 32)
    lengths = [256, 512] if quick else ([1024, 2048, 4096, 8192] if cuda else [128, 256, 512])
    print(f"\n## Causal attention, forward + backward, batch {B}, {H} heads of {D}, {dtype}")
    print(f"{'T':>6}  {'kernel':<26}{'ms':>9}{'saved MB':>10}")
    rows = []
    for T in lengths:
        q, k, v = (torch.randn(B, H, T, D, device=device, dtype=dtype, requires_grad=True)
                   for _ in range(3))
        kernels: list[tuple[str, Callable[[], torch.Tensor]]] = []

        def fused() -> torch.Tensor:
            backend = SDPBackend.FLASH_ATTENTION
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def math_kernel() -> torch.Tensor:
            with sdpa_kernel([SDPBackend.MATH]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def tiled() -> torch.Tensor:
            out = flash.flash_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1),
                                        is_causal=True, block_size=128 if cuda else 64)
            return out
        kernels = [("PyTorch flash kernel", fused), ("PyTorch math kernel", math_kernel),
                   ("dlbook.flash (Python tiles)", tiled)]
        for name, fn in kernels:
            if name.startswith("dlbook") and T > (4096 if cuda else 512):
                continue

            def step(fn=fn) -> None:
                fn().float().sum().backward()
            try:
                ms = 1e3 * time_call(step, device, repeats=2 if quick else 3, warmup=1)
                saved, _, _ = calc.saved_tensor_bytes(fn, exclude=(q, k, v))
            except RuntimeError as err:        # no flash kernel for this device or dtype
                print(f"{T:>6}  {name:<26}  skipped: {str(err).splitlines()[0][:40]}")
                continue
            rows.append(dict(T=T, kernel=name, ms=ms, saved=saved))
            print(f"{T:>6}  {name:<26}{ms:>9.2f}{saved / 1e6:>10.2f}")
        del q, k, v
    return rows


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(prog="python -m dlbook.bench", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    parser.add_argument("--only", choices=["mfu", "memory", "attention"], default=None)
    args = parser.parse_args(argv)
    device = default_device(args.device) if args.device else default_device()
    print(f"# dlbook.bench: torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {time.strftime('%Y-%m-%d')}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    results = {}
    if args.only in (None, "mfu"):
        results["mfu"] = mfu_table(device, args.quick, compile=not args.no_compile)
    if args.only in (None, "memory"):
        results["memory"] = memory_table(device, args.quick)
    if args.only in (None, "attention"):
        results["attention"] = attention_table(device, args.quick)
    return results


if __name__ == "__main__":
    main()
