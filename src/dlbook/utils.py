"""Utilities every section uses: device choice, seeding, and showing source code."""

from __future__ import annotations

import inspect
import os
import random
from typing import Any

import numpy as np
import torch


def device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` forces a choice (``"cpu"``, ``"cuda"``, ``"mps"``); asking for one that is not
    available raises a ``ValueError`` instead of silently falling back.
    """
    if prefer is not None:
        if prefer not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"prefer must be 'cpu', 'cuda' or 'mps', got {prefer!r}")
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }[prefer]
        if not available:
            raise ValueError(f"device {prefer!r} is not available here; call dlbook.device() "
                             "without an argument to pick the best available one")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) and turn off cuDNN autotuning.

    Call it once at the top of a notebook, and again before any experiment you want to repeat.
    On one machine, with the same number of threads, a run then repeats exactly. It does not
    make different machines agree: the vector kernels a CPU picks (AVX2, AVX-512, the portable
    ones; Intel's or AMD's code path in MKL) add numbers in different orders, so the last
    digits of a result differ, and a long float32 training run can drift further. The book
    therefore runs small experiments in float64 and prints only the digits that survive a
    change of kernels (the tests check this). Returns the seed so it can be logged.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r} of type {type(seed).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses (workers, torchrun)
    # cuBLAS needs this set before its first use to be deterministic on a GPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return seed


def check_like(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """Raise a ``ValueError`` that names the fix unless ``t`` has ``ref``'s dtype and device.

    The topic modules call it before mixing two tensors, where torch would otherwise raise a
    cryptic error or silently promote float32 to float64.
    """
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} is {t.dtype} but {ref_name} is {ref.dtype}: convert with "
                         f"{name}.to({ref_name}.dtype)")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} on {ref.device}: move it "
                         f"with {name}.to({ref_name}.device)")


def show_source(obj: Any) -> Any:
    """Show the source code of a function or class, syntax-highlighted in a notebook.

    The book uses it so that code living in ``dlbook`` is read in the section that teaches it,
    without pasting a second copy. Outside IPython it returns the plain source string.
    """
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as exc:
        raise ValueError(f"cannot show the source of {obj!r}: pass a Python function, class "
                         "or module defined in a .py file") from exc
    try:
        from IPython.display import Code
    except ImportError:  # plain Python, no IPython
        return source
    return Code(source, language="python")


def portable_init_(model: torch.nn.Module, seed: int | None = None) -> torch.nn.Module:
    """Re-initialise ``model`` with PyTorch's default distributions, drawn so that every CPU
    gives the same numbers; returns the model.

    PyTorch draws its default weights with ``uniform_`` and ``normal_`` in the parameter's
    dtype, and in float32 those use vectorised kernels whose last bits differ between AVX-512,
    AVX2 and the portable code: the "same seed" then starts training from slightly different
    weights on different machines. Here every value is drawn with ``torch.rand``/``torch.randn``
    in float64 (identical everywhere) and then rounded to the parameter's dtype. Distributions:
    ``Linear`` and ``Conv*`` weights and biases U(±1/√fan_in) (what PyTorch's default
    ``kaiming_uniform_(a=√5)`` amounts to); ``RNN``/``LSTM``/``GRU`` U(±1/√hidden_size);
    ``Embedding`` N(0, 1); norm layers ones and zeros. Other modules with parameters raise a
    ``ValueError`` rather than being left as they were. ``seed`` gives the draws their own
    generator; without it the global one is used.
    """
    import math

    from torch import nn

    if not isinstance(model, nn.Module):
        raise ValueError(f"portable_init_ expects an nn.Module, got {type(model).__name__}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def uniform(p: torch.Tensor, bound: float) -> None:
        u = torch.rand(p.shape, generator=gen, dtype=torch.float64)
        p.copy_((bound * (2 * u - 1)).to(p.dtype))

    norms = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
    with torch.no_grad():
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if not own:
                continue
            if isinstance(module, nn.Linear):
                fan_in = module.in_features
            elif isinstance(module, nn.modules.conv._ConvNd):
                fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            elif isinstance(module, nn.RNNBase):
                fan_in = module.hidden_size
            elif isinstance(module, nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen,
                                                dtype=torch.float64).to(module.weight.dtype))
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
                continue
            elif isinstance(module, norms):
                for name, p in module.named_parameters(recurse=False):
                    p.fill_(0.0 if name == "bias" else 1.0)
                continue
            else:
                raise ValueError(f"portable_init_ does not know how PyTorch initialises "
                                 f"{type(module).__name__}; initialise it yourself, drawing in "
                                 "float64")
            for p in own:
                uniform(p, 1 / math.sqrt(fan_in))
    return model


#: A progress bar's text without timings or speed, so that a saved notebook and the website
#: show the same final line on every machine.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}"


def progress(iterable: Any = None, *, desc: str | None = None, total: int | None = None,
             disable: bool = False, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar for loops that take more than a few seconds.

    In Jupyter it is the live widget bar; when the loop ends, the cell's stored output is
    replaced by the bar's final line ("desc: 100%|██████████| 7/7"), without the elapsed time
    or speed. That line is what the website shows and what the notebook tests compare. Outside
    a notebook it is tqdm's usual text bar. Use it like ``tqdm``: ``for x in progress(xs, desc=...)``.
    """
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.notebook import tqdm_notebook

    kwargs.setdefault("bar_format", BAR_FORMAT)
    if disable or not issubclass(auto_tqdm, tqdm_notebook):
        return auto_tqdm(iterable, desc=desc, total=total, disable=disable, **kwargs)
    from IPython.display import display

    class FinalLineBar(auto_tqdm):
        """tqdm's widget bar, whose stored output becomes its final line when it closes."""

        handle = None

        def close(self) -> None:
            super().close()
            if self.handle is not None:
                self.handle.update(self.container)
                self.handle = None

    bar = FinalLineBar(iterable, desc=desc, total=total, display=False, **kwargs)
    bar.handle = display(bar.container, display_id=True)
    return bar
