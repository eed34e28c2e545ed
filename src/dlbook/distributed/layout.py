"""Choosing a layout: how many ways of data, tensor, pipeline and context parallelism
(section 6.6).

Given a model (a :class:`dlbook.gpt.GPTConfig`) and a cluster (how many GPUs, which kind, how
many per node, how fast the links are), :func:`propose_layout` tries every factorisation
``n_gpus = DP · TP · PP · CP`` that the rules allow, keeps those whose memory per GPU fits, and
sorts them by an estimated step time. The estimate is a model to reason with, not a
simulator:

* **memory** (section 5.1's calculator, :func:`dlbook.calc.training_memory`): model states
  ``N / (TP · PP)`` per GPU, the optimizer's share divided by DP (ZeRO stage 1); activations
  of one micro-batch divided by TP (sequence parallelism shards the rest) and by CP (each rank
  holds ``s / CP`` tokens), times the micro-batches in flight on the first pipeline stage
  (``min(PP, m)`` of its ``L / PP`` layers under 1F1B);
* **compute**: the step's FLOPs (:func:`dlbook.calc.flops_per_token` × tokens, plus one more
  forward pass with full activation recomputation) at an assumed fraction of the peak;
* **pipeline bubble**: ``(PP - 1) / m`` of the compute for ``m`` micro-batches (1F1B);
* **communication** with the α–β model of section 6.1, ring algorithms: TP's all-reduces of
  the activations (four per layer and micro-batch, six with recomputation) over NVLink, DP's
  gradient all-reduce (ZeRO-1's reduce-scatter plus all-gather moves the same bytes) over the
  network, PP's sends of activations between stages, and CP's passing of key/value blocks
  (counted only where it outlasts the attention it hides behind).

Rules: TP divides the heads and stays inside a node (TP ≤ GPUs per node); PP divides the
layers; every DP rank gets whole micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlbook.calc import GPU, GPUS, activation_bytes, flops_per_token, parameter_count, \
    training_memory
from dlbook.gpt import GPTConfig

__all__ = ["Cluster", "Layout", "layout_memory", "ring_allreduce_time", "estimate_layout",
           "propose_layout", "gpt3_175b", "NARAYANAN_2021", "megatron_flops_per_step"]


@dataclass(frozen=True)
class Cluster:
    """The machine: ``n_gpus`` of one kind, ``gpus_per_node`` in a node joined by NVLink
    (``intra_bandwidth`` bytes/s per GPU and direction), nodes joined by a network
    (``inter_bandwidth`` per GPU and direction), ``latency`` α seconds per message."""
    n_gpus: int
    gpu: GPU = GPUS["A100"]
    gpus_per_node: int = 8
    intra_bandwidth: float = 300e9     # A100 NVLink 3: 600 GB/s both directions together
    inter_bandwidth: float = 25e9      # one 200 Gb/s InfiniBand HDR port per GPU (DGX A100)
    latency: float = 1e-5


@dataclass(frozen=True)
class Layout:
    """One way to place the job, with its memory per GPU (bytes) and step time (seconds)."""
    dp: int
    tp: int
    pp: int
    cp: int
    micro_batch: int
    n_micro: int                       # micro-batches per pipeline per step
    memory: float                      # bytes per GPU (the fullest one: first stage)
    compute: float
    bubble: float
    tp_comm: float
    pp_comm: float
    dp_comm: float
    cp_comm: float
    flops: float = 0.0                 # model FLOPs of one step (no recomputation)
    n_gpus: int = 1
    details: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def step_time(self) -> float:
        return self.compute + self.bubble + self.tp_comm + self.pp_comm + self.dp_comm \
            + self.cp_comm

    @property
    def model_flops_per_gpu(self) -> float:
        """Useful FLOP/s per GPU (recomputation not counted)."""
        return self.flops / self.step_time / self.n_gpus

    def __str__(self) -> str:
        return (f"DP={self.dp:<4} TP={self.tp:<2} PP={self.pp:<3} CP={self.cp:<2} "
                f"mem {self.memory / 1e9:5.1f} GB  step {self.step_time:6.2f} s")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def ring_allreduce_time(n_bytes: float, n_ranks: int, bandwidth: float,
                        latency: float = 1e-5) -> float:
    """α–β time of a ring all-reduce: 2(n-1) steps, each moving n_bytes / n per rank."""
    if n_ranks == 1:
        return 0.0
    return 2 * (n_ranks - 1) * (latency + n_bytes / n_ranks / bandwidth)


def layout_memory(config: GPTConfig, dp: int, tp: int, pp: int, cp: int = 1,
                  micro_batch: int = 1, n_micro: int | None = None,
                  seq_len: int | None = None, checkpointing: str = "selective",
                  zero_stage: int = 1) -> dict[str, float]:
    """Bytes per GPU on the first pipeline stage (it holds the most activations): model
    states, activations and their total."""
    for name, v in (("dp", dp), ("tp", tp), ("pp", pp), ("cp", cp),
                    ("micro_batch", micro_batch)):
        _positive_int(name, v)
    s = config.context_length if seq_len is None else seq_len
    if s % cp:
        raise ValueError(f"seq_len={s} must be divisible by cp={cp}")
    states = training_memory(config, micro_batch, s, zero_stage=zero_stage,
                             n_devices=dp).model_states / (tp * pp)
    in_flight = pp if n_micro is None else min(pp, n_micro)
    act = activation_bytes(config, micro_batch, s // cp, checkpointing=checkpointing,
                           attention_matrix=False) / tp * in_flight / pp
    return {"model states": states, "activations": act, "total": states + act}


def megatron_flops_per_step(config: GPTConfig, global_batch: int,
                            seq_len: int | None = None) -> float:
    """Narayanan et al. (2021), equation 3: F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)), the
    matmul FLOPs of one step *with* full recomputation (an extra forward pass)."""
    s = config.context_length if seq_len is None else seq_len
    l, h, V = config.n_layers, config.d_model, config.vocab_size
    return 96 * global_batch * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))


def estimate_layout(config: GPTConfig, cluster: Cluster, dp: int, tp: int, pp: int,
                    cp: int = 1, global_batch: int = 512, seq_len: int | None = None,
                    micro_batch: int = 1, efficiency: float = 0.6,
                    checkpointing: str = "selective", zero_stage: int = 1,
                    grad_bytes: int = 2) -> Layout:
    """Memory and step time of one layout (see the module's docstring for the model)."""
    for name, v in (("dp", dp), ("tp", tp), ("pp", pp), ("cp", cp),
                    ("global_batch", global_batch), ("micro_batch", micro_batch)):
        _positive_int(name, v)
    if dp * tp * pp * cp != cluster.n_gpus:
        raise ValueError(f"dp·tp·pp·cp = {dp * tp * pp * cp} must equal the cluster's "
                         f"{cluster.n_gpus} GPUs")
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency is a fraction of the peak in (0, 1], got {efficiency!r}")
    if global_batch % (dp * micro_batch):
        raise ValueError(f"global_batch={global_batch} must be a multiple of dp·micro_batch = "
                         f"{dp * micro_batch}: every data-parallel rank needs whole "
                         "micro-batches")
    s = config.context_length if seq_len is None else seq_len
    m = global_batch // (dp * micro_batch)
    h, L = config.d_model, config.n_layers
    mem = layout_memory(config, dp, tp, pp, cp, micro_batch, m, s, checkpointing, zero_stage)

    flops = flops_per_token(config, s) * global_batch * s
    recompute = 4 / 3 if checkpointing == "full" else 1.0     # one more forward of three
    compute = flops * recompute / (cluster.n_gpus * cluster.gpu.bf16_flops * efficiency)
    bubble = (pp - 1) / m * compute

    # bandwidth of a group of g consecutive ranks: NVLink while it fits in a node
    def bw(g: int, inside: int = 1) -> float:
        return cluster.intra_bandwidth if g * inside <= cluster.gpus_per_node \
            else cluster.inter_bandwidth

    act_bytes = 2 * micro_batch * (s // cp) * h               # one bf16 activation tensor
    per_layer = 6 if checkpointing == "full" else 4
    tp_comm = m * (L // pp) * per_layer * ring_allreduce_time(act_bytes, tp, bw(tp),
                                                              cluster.latency)
    # stage boundaries: each micro-batch sends activations forward and gradients back
    pp_comm = 0.0 if pp == 1 else 2 * m * (cluster.latency + act_bytes / tp
                                           / bw(pp, tp * cp * dp))
    shard = parameter_count(config) / (tp * pp)
    dp_comm = ring_allreduce_time(grad_bytes * shard, dp, bw(dp, tp * cp), cluster.latency)
    cp_comm = 0.0
    if cp > 1:
        kv = 2 * act_bytes * config.n_kv_heads / config.n_heads / tp   # k and v of a block
        per = 3 * (cp - 1) * (cluster.latency + kv / bw(cp, tp))        # fwd + twice bwd
        attn = (12 * (s // cp) * s * h * micro_batch / tp
                / (cluster.gpu.bf16_flops * efficiency))              # attention it hides behind
        cp_comm = m * (L // pp) * max(0.0, per - attn)
    return Layout(dp, tp, pp, cp, micro_batch, m, mem["total"], compute, bubble, tp_comm,
                  pp_comm, dp_comm, cp_comm, flops, cluster.n_gpus,
                  details={"memory": mem})


def propose_layout(config: GPTConfig, n_gpus: int, gpu: str | GPU = "A100",
                   global_batch: int = 512, seq_len: int | None = None, *,
                   gpus_per_node: int = 8, micro_batch: int = 1, max_cp: int = 1,
                   efficiency: float = 0.6, checkpointing: str = "selective",
                   zero_stage: int = 1, usable: float = 0.9,
                   cluster: Cluster | None = None) -> list[Layout]:
    """Every DP × TP × PP × CP layout of ``n_gpus`` that fits in ``usable`` of each GPU's
    memory, fastest first by :func:`estimate_layout`. Raises ``ValueError`` when none fits
    (the message says what to change)."""
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a dlbook.gpt.GPTConfig, got {type(config).__name__}")
    _positive_int("n_gpus", n_gpus)
    _positive_int("gpus_per_node", gpus_per_node)
    _positive_int("max_cp", max_cp)
    if isinstance(gpu, str):
        if gpu not in GPUS:
            raise ValueError(f"unknown gpu {gpu!r}: use one of {sorted(GPUS)} or a "
                             "dlbook.calc.GPU")
        gpu = GPUS[gpu]
    if cluster is None:
        cluster = Cluster(n_gpus, gpu, gpus_per_node)
    elif cluster.n_gpus != n_gpus:
        raise ValueError(f"cluster has {cluster.n_gpus} GPUs but n_gpus={n_gpus}")
    s = config.context_length if seq_len is None else seq_len
    fitting, tried = [], 0
    for tp in _divisors(min(n_gpus, gpus_per_node)):
        if config.n_heads % tp or config.n_kv_heads % tp:
            continue
        for pp in _divisors(n_gpus // tp):
            if config.n_layers % pp:
                continue
            for cp in _divisors(min(max_cp, n_gpus // (tp * pp))):
                if (n_gpus // (tp * pp)) % cp or s % cp:
                    continue
                dp = n_gpus // (tp * pp * cp)
                if global_batch % (dp * micro_batch):
                    continue
                tried += 1
                lay = estimate_layout(config, cluster, dp, tp, pp, cp, global_batch, s,
                                      micro_batch, efficiency, checkpointing, zero_stage)
                if lay.memory <= usable * gpu.memory_bytes:
                    fitting.append(lay)
    if not tried:
        raise ValueError(f"no DP·TP·PP·CP factorisation of {n_gpus} GPUs satisfies the rules "
                         f"(TP divides {config.n_heads} heads and ≤ {gpus_per_node}, PP "
                         f"divides {config.n_layers} layers, global_batch={global_batch} "
                         "splits into whole micro-batches): change the GPU count or the "
                         "batch")
    if not fitting:
        raise ValueError(f"none of the {tried} layouts of {n_gpus} {gpu.name} fits in memory: "
                         "use more GPUs, a smaller micro_batch, checkpointing='full' or "
                         "zero_stage=3")
    return sorted(fitting, key=lambda lay: lay.step_time)


# ------------------------------------------------------------------ GPT-3 and its published run

def gpt3_175b() -> GPTConfig:
    """GPT-3 175B (Brown et al. 2020) with the 51,200-token vocabulary of Narayanan et al."""
    return GPTConfig(vocab_size=51200, context_length=2048, d_model=12288, n_layers=96,
                     n_heads=96)


#: Narayanan et al. (2021), section 5.1: GPT-3 175B on 1,024 A100s with batch 1536 reaches
#: 140 teraFLOP/s per GPU (equation 3, which counts the recomputation), so 300 B tokens take
#: about 34 days; every model of 18 B parameters and more in their Table 1 uses TP = 8.
NARAYANAN_2021 = {"n_gpus": 1024, "global_batch": 1536, "seq_len": 2048, "tflops": 140.0,
                  "days_300b": 34, "tp": 8, "peak": 312e12}
