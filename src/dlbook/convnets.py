"""Convolutional networks in practice (Section 3.2), built from ``torch.nn`` layers.

* Models: :func:`lenet` (a LeNet-style CNN for 8 × 8 digit images), :func:`cnn1d` (a 1-D CNN
  for MNIST-1D signals), :class:`ResidualBlock` and :func:`resnet1d` (a small ResNet, or with
  ``skip=False`` the same network without its skip connections). Each returns a plain
  ``nn.Sequential`` (or ``nn.Module``) that takes the flat rows the data sets give, (B, 64) or
  (B, 40), through :class:`Reshape`.
* Data: :func:`fixed_permutation` and :func:`shuffle_positions` (the spatial-shuffle
  experiment of Greydanus, 2020), :func:`random_shift` and :class:`Shifted` (shift augmentation
  that ``dlbook.train.fit`` can iterate over).
* Looking inside: :func:`layer_shapes`, :func:`count_parameters`, :func:`feature_maps` and
  :func:`conv_grad_norms`.

The models are created with PyTorch's default initialisation; for runs that agree on every
CPU, create them in float64 and call ``dlbook.utils.portable_init_(model, seed)``. Every public
function checks its input and raises a ``ValueError`` that says what to pass instead; the
checks live in small private helpers at the end of the file.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


# --- models ----------------------------------------------------------------------------------

class Reshape(nn.Module):
    """Flat rows (B, n) → (B, *shape), e.g. (B, 64) → (B, 1, 8, 8).

    Data sets store one example per row; convolutions want a channel axis (and, for images, two
    spatial axes). An input that already has the shape (B, *shape) passes unchanged.
    """

    def __init__(self, *shape: int) -> None:
        super().__init__()
        _check_sizes("shape", shape)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rows(x, self.shape)
        return x if tuple(x.shape[1:]) == self.shape else x.reshape(len(x), *self.shape)

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.shape))


def lenet(channels: Sequence[int] = (12, 24), hidden: int = 64, classes: int = 10, *,
          image_size: int = 8, batch_norm: bool = True, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> nn.Sequential:
    """A LeNet-style CNN for small square grey-scale images, (B, image_size²) → (B, classes).

    Two stages of 3 × 3 convolution (padding 1, so the size is kept), batch norm, ReLU and
    2 × 2 max pooling (which halves it), then a small MLP on the flattened feature maps, as in
    LeNet-5 (LeCun et al., 1998), whose two convolutional layers had 6 and 16 channels. With
    the defaults:

        8×8 → conv → 12@8×8 → pool → 12@4×4 → conv → 24@4×4 → pool → 24@2×2 → 96 → 64 → 10
    """
    c1, c2 = _check_lenet(channels, hidden, classes, image_size, batch_norm)
    side = image_size // 4  # two poolings halve the side twice
    kw = {"dtype": dtype, "device": device}

    def norm(c: int) -> nn.Module:
        return nn.BatchNorm2d(c, **kw) if batch_norm else nn.Identity()

    return nn.Sequential(
        Reshape(1, image_size, image_size),
        nn.Conv2d(1, c1, 3, padding=1, **kw), norm(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, **kw), norm(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * side * side, hidden, **kw), nn.ReLU(),
        nn.Linear(hidden, classes, **kw),
    )


def cnn1d(channels: Sequence[int] = (8, 16, 16), classes: int = 10, *, length: int = 40,
          kernel_size: Sequence[int] = (5, 3, 3), batch_norm: bool = True,
          dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> nn.Sequential:
    """A 1-D CNN for signals of ``length`` values, (B, length) → (B, classes).

    One stage per entry of ``channels``: a convolution with ``kernel_size[i]`` taps and
    "same" padding, batch norm (unless ``batch_norm=False``), ReLU and max pooling by 2. With
    three stages a signal of 40 positions becomes 5 positions of ``channels[-1]`` features,
    which a linear layer reads: 1@40 → 8@20 → 16@10 → 16@5 → 80 → 10.
    """
    _check_cnn1d(channels, classes, length, kernel_size, batch_norm)
    kw = {"dtype": dtype, "device": device}
    layers: list[nn.Module] = [Reshape(1, length)]
    c_in = 1
    for c, k in zip(channels, kernel_size):
        layers.append(nn.Conv1d(c_in, c, k, padding=k // 2, **kw))
        if batch_norm:
            layers.append(nn.BatchNorm1d(c, **kw))
        layers += [nn.ReLU(), nn.MaxPool1d(2)]
        c_in = c
    layers += [nn.Flatten(), nn.Linear(c_in * (length >> len(channels)), classes, **kw)]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """The basic block of a ResNet (He et al., 2016): ``y = relu(x + F(x))``.

    The residual branch is ``F = BN ∘ conv ∘ ReLU ∘ BN ∘ conv``, two convolutions with "same"
    padding that keep the number of channels and positions, so the input can be added back
    unchanged. ``skip=False`` drops the addition, ``y = relu(F(x))``: the plain block of the
    same network, for comparison. ``batch_norm=False`` leaves out the two norms.
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, skip: bool = True,
                 batch_norm: bool = True, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        _check_block(channels, kernel_size, skip, batch_norm)
        kw = {"dtype": dtype, "device": device}
        norm = (lambda: nn.BatchNorm1d(channels, **kw)) if batch_norm else nn.Identity
        self.skip = skip
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, **kw)
        self.bn1 = norm()
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, **kw)
        self.bn2 = norm()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch F(x)."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_block_input(x, self.conv1)
        return F.relu(x + self.branch(x) if self.skip else self.branch(x))

    def extra_repr(self) -> str:
        return f"skip={self.skip}"


def resnet1d(blocks: int = 4, channels: int = 8, classes: int = 10, *, length: int = 40,
             skip: bool = True, batch_norm: bool = True, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None) -> nn.Sequential:
    """A small 1-D ResNet: a stem, ``blocks`` residual blocks, global average pooling, a
    linear layer; (B, length) → (B, classes).

    The stem (a convolution with 5 taps, batch norm, ReLU, max pooling by 2) turns the signal
    into ``channels`` features at ``length // 2`` positions; each block keeps that shape.
    Global average pooling then takes the mean of each feature over the positions, so the
    classifier does not care where along the signal a pattern was found. The network has
    ``2 * blocks + 1`` convolutions; ``skip=False`` gives the plain network of the same depth.
    """
    _check_resnet(blocks, channels, classes, length, skip, batch_norm)
    kw = {"dtype": dtype, "device": device}
    stem_norm = nn.BatchNorm1d(channels, **kw) if batch_norm else nn.Identity()
    return nn.Sequential(
        Reshape(1, length),
        nn.Conv1d(1, channels, 5, padding=2, **kw), stem_norm, nn.ReLU(), nn.MaxPool1d(2),
        *[ResidualBlock(channels, skip=skip, batch_norm=batch_norm, **kw) for _ in range(blocks)],
        nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(channels, classes, **kw),
    )


# --- data: the fixed shuffle and shift augmentation ------------------------------------------

def fixed_permutation(n: int, seed: int = 0) -> torch.Tensor:
    """One random order of ``n`` positions, drawn from its own seeded generator (int64, (n,)).

    The spatial-shuffle experiment applies this *same* permutation to every signal, so all
    the information stays, and only which positions are neighbours is lost.
    """
    _check_whole("n", n, 1)
    _check_whole("seed", seed, 0)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


def shuffle_positions(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The signals ``x`` (..., n) with their positions reordered:
    ``out[..., j] = x[..., perm[j]]``."""
    _check_permutation(x, perm)
    return x[..., perm.to(x.device)]


def random_shift(x: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None,
                 circular: bool = True) -> torch.Tensor:
    """Shift every signal of ``x`` (B, ..., L) along its last axis by its own random integer
    ``s`` from ``-max_shift`` to ``max_shift``: ``out[i, ..., t] = x[i, ..., t - s_i]``.

    ``circular=True`` wraps the values that fall off one end around to the other (MNIST-1D's
    own generator translates its signals this way); ``circular=False`` fills with zeros, as a
    shifted image would show blank background. The shifts are drawn on the CPU from
    ``generator`` (integers: the same on every machine).
    """
    _check_shift(x, max_shift, generator, circular)
    n = x.shape[-1]
    s = torch.randint(-max_shift, max_shift + 1, (len(x),), generator=generator).to(x.device)
    source = torch.arange(n, device=x.device) - s.reshape(-1, *([1] * (x.ndim - 1)))
    out = x.gather(-1, (source % n).expand(x.shape))
    if not circular:
        out = out.masked_fill((source < 0) | (source >= n), 0)
    return out


class Shifted:
    """The batches of ``loader``, each signal shifted by :func:`random_shift` (for ``fit``).

    ``Shifted(loader, max_shift=5, seed=0)`` can be passed to ``dlbook.train.fit`` wherever a
    loader goes. Its generator is seeded once, so the shifts of every epoch are new, and the
    whole sequence of shifts repeats exactly for the same seed.
    """

    def __init__(self, loader: Iterable, max_shift: int, *, seed: int = 0,
                 circular: bool = True) -> None:
        _check_whole("max_shift", max_shift, 0)
        _check_whole("seed", seed, 0)
        if not hasattr(loader, "__iter__"):
            raise ValueError("loader must yield (x, y) batches, e.g. "
                             "dlbook.data.loader((X, y), 100, shuffle=True)")
        self.loader, self.max_shift, self.circular = loader, max_shift, circular
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield random_shift(x, self.max_shift, generator=self.generator,
                               circular=self.circular), y


# --- looking inside a network ----------------------------------------------------------------

def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers (weights and biases) in ``model``."""
    _check_module(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_shapes(model: nn.Sequential, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The shape of the signal after each layer of ``model`` on the input ``x``.

    Returns ``[("input", shape), (name of layer 0, shape), ...]``, without gradients and in
    evaluation mode (so batch-norm statistics are not touched).
    """
    _check_sequential(model)
    was_training = model.training
    model.eval()
    shapes = [("input", tuple(x.shape))]
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            shapes.append((type(layer).__name__, tuple(x.shape)))
    model.train(was_training)
    return shapes


def feature_maps(model: nn.Module, x: torch.Tensor,
                 kinds: tuple[type[nn.Module], ...] = (nn.ReLU,)) -> list[torch.Tensor]:
    """The outputs of every layer of the given ``kinds`` (by default the ReLUs) on ``x``.

    Recorded with forward hooks in evaluation mode and without gradients, in the order the
    layers run: for a CNN the feature maps after each non-linearity, shape (B, C, ...).
    """
    _check_module(model)
    if not (isinstance(kinds, tuple) and kinds and all(isinstance(k, type) for k in kinds)):
        raise ValueError(f"kinds must be a tuple of module classes, e.g. (nn.ReLU,), got {kinds!r}")
    maps: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
             for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return maps


def conv_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
                    ) -> torch.Tensor:
    """The norm of ``dLoss/dW`` for each convolution of ``model`` on one batch, in order.

    A 1-D tensor, first convolution first. Measured in training mode (batch statistics, as in
    a training step); the gradients are cleared before and after, and the running statistics
    of batch norm are put back as they were.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError("the model has no convolution layer (nn.Conv1d, nn.Conv2d, ...)")
    _check_targets(x, y)
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or
               "num_batches" in k}
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = torch.stack([c.weight.grad.norm() for c in convs]).detach()
    model.zero_grad(set_to_none=True)
    model.load_state_dict(buffers, strict=False)
    model.train(was_training)
    return norms


# --- input checks (private: one call at the top of each public function) ---------------------

def _check_whole(name: str, v: object, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {v!r}")


def _check_sizes(name: str, sizes: object, count: int | None = None) -> None:
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or not sizes or \
            any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
                for s in sizes):  # type: ignore[union-attr]
        raise ValueError(f"{name} must be a sequence of positive whole numbers, got {sizes!r}")
    if count is not None and len(sizes) != count:  # type: ignore[arg-type]
        raise ValueError(f"{name} must have {count} entries, got {sizes!r}")


def _check_flag(name: str, v: object) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{name} must be True or False, got {v!r}")


def _check_lenet(channels: object, hidden: object, classes: object, image_size: object,
                 batch_norm: object) -> tuple[int, int]:
    _check_sizes("channels", channels, 2)
    _check_whole("hidden", hidden, 1)
    _check_whole("classes", classes, 2)
    _check_whole("image_size", image_size, 4)
    if image_size % 4:  # type: ignore[operator]
        raise ValueError(f"image_size must be a multiple of 4 (two 2 × 2 poolings), got "
                         f"{image_size}")
    _check_flag("batch_norm", batch_norm)
    return int(channels[0]), int(channels[1])  # type: ignore[index]


def _check_cnn1d(channels: object, classes: object, length: object, kernel_size: object,
                 batch_norm: object) -> None:
    _check_sizes("channels", channels)
    _check_sizes("kernel_size", kernel_size, len(channels))  # type: ignore[arg-type]
    if any(k % 2 == 0 for k in kernel_size):  # type: ignore[union-attr]
        raise ValueError(f"kernel sizes must be odd so that 'same' padding keeps the length, "
                         f"got {kernel_size!r}")
    _check_whole("classes", classes, 2)
    _check_whole("length", length, 1)
    stages = len(channels)  # type: ignore[arg-type]
    if length % 2 ** stages:  # type: ignore[operator]
        raise ValueError(f"length must be a multiple of 2**{stages} = {2 ** stages} for "
                         f"{stages} poolings by 2, got {length}")
    _check_flag("batch_norm", batch_norm)


def _check_block(channels: object, kernel_size: object, skip: object, batch_norm: object) -> None:
    _check_whole("channels", channels, 1)
    _check_whole("kernel_size", kernel_size, 1)
    if kernel_size % 2 == 0:  # type: ignore[operator]
        raise ValueError(f"kernel_size must be odd so that the block keeps the length, got "
                         f"{kernel_size}")
    _check_flag("skip", skip)
    _check_flag("batch_norm", batch_norm)


def _check_resnet(blocks: object, channels: object, classes: object, length: object,
                  skip: object, batch_norm: object) -> None:
    _check_whole("blocks", blocks, 0)
    _check_whole("classes", classes, 2)
    _check_whole("length", length, 2)
    _check_block(channels, 3, skip, batch_norm)


def _check_tensor(x: object, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _check_rows(x: object, shape: tuple[int, ...]) -> None:
    _check_tensor(x)
    n = math.prod(shape)
    flat = x.ndim == 2 and x.shape[1] == n  # type: ignore[union-attr]
    if not flat and tuple(x.shape[1:]) != shape:  # type: ignore[union-attr]
        want = ", ".join(map(str, shape))
        raise ValueError(f"expected x of shape (batch, {n}) or (batch, {want}), got "
                         f"{tuple(x.shape)}")  # type: ignore[union-attr]
    if not x.is_floating_point():  # type: ignore[union-attr]
        raise ValueError(f"x is {x.dtype}: convert it with "  # type: ignore[union-attr]
                         "x.double() (or x.float())")


def _check_block_input(x: torch.Tensor, conv: nn.Conv1d) -> None:
    _check_tensor(x)
    if x.ndim != 3 or x.shape[1] != conv.in_channels:
        raise ValueError(f"expected x of shape (batch, {conv.in_channels}, length), got "
                         f"{tuple(x.shape)}")
    if x.dtype != conv.weight.dtype:
        raise ValueError(f"x is {x.dtype} but the block's weights are {conv.weight.dtype}: "
                         f"convert with x.to({conv.weight.dtype})")


def _check_permutation(x: object, perm: object) -> None:
    _check_tensor(x)
    _check_tensor(perm, "perm")
    n = x.shape[-1] if x.ndim else 0  # type: ignore[union-attr]
    if perm.ndim != 1 or perm.dtype != torch.int64 or len(perm) != n or \
            not torch.equal(perm.sort().values.cpu(), torch.arange(n)):  # type: ignore[union-attr]
        raise ValueError(f"perm must be a permutation of the {n} positions of x's last axis "
                         f"(int64, shape ({n},)), e.g. fixed_permutation({n}, seed=0)")


def _check_shift(x: object, max_shift: object, generator: object, circular: object) -> None:
    _check_tensor(x)
    if x.ndim < 2:  # type: ignore[union-attr]
        raise ValueError(f"expected a batch of signals x of shape (batch, ..., length), got "
                         f"{tuple(x.shape)}")  # type: ignore[union-attr]
    _check_whole("max_shift", max_shift, 0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__}")
    _check_flag("circular", circular)


def _check_module(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_sequential(model: object) -> None:
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"expected an nn.Sequential (e.g. from convnets.lenet), got "
                         f"{type(model).__name__}")


def _check_targets(x: object, y: object) -> None:
    _check_tensor(x)
    _check_tensor(y, "y")
    if len(x) != len(y):  # type: ignore[arg-type]
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and "
                         f"{len(y)}")  # type: ignore[arg-type]
