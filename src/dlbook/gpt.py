"""A GPT you can read in one sitting (sections 4.3 and 4.4).

One decoder-only Transformer covers both GPT-2 and today's open models; the configuration picks
the parts::

    GPT-2 (2019)              Llama-style (2023-)
    LayerNorm with bias       RMSNorm                     norm="layernorm" | "rmsnorm"
    GELU MLP, d_ff = 4d       SwiGLU MLP                  mlp="gelu" | "swiglu"
    learned positions         rotary positions            positions="learned" | "rope"
    biases everywhere         no biases                   bias=True | False
    tied input/output         separate output matrix      tie_embeddings=True | False
    n_kv_heads = n_heads      grouped-query attention     n_kv_heads

``GPT.from_hf`` / ``GPT.to_hf`` convert to and from Hugging Face's ``GPT2LMHeadModel`` and
``LlamaForCausalLM``; the tests check the logits agree to 1e-5 in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.attention import KVCache, MultiHeadAttention

__all__ = ["GPTConfig", "GPT", "Block", "MLP", "SwiGLU", "RMSNorm", "init_weights_", "hf_config",
           "config_from_hf", "state_dict_from_hf", "state_dict_to_hf"]

# (n_layers, n_heads, d_model) of the four published GPT-2 models (Radford et al. 2019)
GPT2_SIZES = {"124M": (12, 12, 768), "355M": (24, 16, 1024), "774M": (36, 20, 1280),
              "1.5B": (48, 25, 1600)}
# Llama 2 7B (Touvron et al. 2023) and Llama 3 8B (Grattafiori et al. 2024)
LLAMA_SIZES = {
    "7B": dict(vocab_size=32000, context_length=4096, d_model=4096, n_layers=32, n_heads=32,
               n_kv_heads=32, d_ff=11008, rope_theta=10000.0),
    "8B": dict(vocab_size=128256, context_length=8192, d_model=4096, n_layers=32, n_heads=32,
               n_kv_heads=8, d_ff=14336, rope_theta=500000.0),
}


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None       # None: one key/value head per query head
    d_ff: int | None = None             # None: 4 * d_model
    norm: str = "layernorm"             # "layernorm" | "rmsnorm"
    mlp: str = "gelu"                   # "gelu" | "swiglu"
    positions: str = "learned"          # "learned" | "rope"
    bias: bool = True
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    causal: bool = True                 # False: every token sees every token (BERT's encoder)

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        choices = {"norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "swiglu"),
                   "positions": ("learned", "rope")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
        for field in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads",
                      "n_kv_heads", "d_ff"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of "
                             f"n_kv_heads={self.n_kv_heads}")
        if self.positions == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError("rotary positions need an even head size d_model // n_heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def gpt2(cls, size: str = "124M", **overrides: Any) -> "GPTConfig":
        """GPT-2's architecture at one of its four published sizes, with any field overridden."""
        if size not in GPT2_SIZES:
            raise ValueError(f"size must be one of {list(GPT2_SIZES)}, got {size!r}")
        n_layers, n_heads, d_model = GPT2_SIZES[size]
        base = dict(vocab_size=50257, context_length=1024, d_model=d_model, n_layers=n_layers,
                    n_heads=n_heads, norm="layernorm", mlp="gelu", positions="learned",
                    bias=True, tie_embeddings=True, norm_eps=1e-5)
        if "d_model" in overrides and "d_ff" not in overrides:
            overrides["d_ff"] = 4 * overrides["d_model"]
        return cls(**{**base, **overrides})

    @classmethod
    def llama(cls, size: str = "7B", **overrides: Any) -> "GPTConfig":
        """A Llama-style model (RMSNorm, SwiGLU, rotary positions, no biases, untied output)."""
        if size not in LLAMA_SIZES:
            raise ValueError(f"size must be one of {list(LLAMA_SIZES)}, got {size!r}")
        base = dict(LLAMA_SIZES[size], norm="rmsnorm", mlp="swiglu", positions="rope",
                    bias=False, tie_embeddings=False, norm_eps=1e-5)
        if "n_heads" in overrides and "n_kv_heads" not in overrides:
            overrides["n_kv_heads"] = overrides["n_heads"]
        if "d_model" in overrides and "d_ff" not in overrides:
            overrides["d_ff"] = swiglu_hidden(overrides["d_model"])
        return cls(**{**base, **overrides})


def swiglu_hidden(d_model: int, multiple_of: int = 256) -> int:
    """Llama's SwiGLU width: 2/3 of 4·d (same parameters as a 4·d GELU MLP), rounded up."""
    hidden = int(2 * 4 * d_model / 3)
    multiple_of = min(multiple_of, max(8, d_model // 8))
    return multiple_of * math.ceil(hidden / multiple_of)


# ------------------------------------------------------------------------------ the parts

class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without the mean and the bias."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


class MLP(nn.Module):
    """GPT-2's position-wise MLP: d -> d_ff -> d with GELU (tanh form, as GPT-2 used)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class SwiGLU(nn.Module):
    """Shazeer's gated MLP: down(silu(gate(x)) * up(x)); names as in Llama."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """A pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = MultiHeadAttention(
            config.d_model, config.n_heads, config.n_kv_heads, bias=config.bias,
            causal=config.causal, rope=config.positions == "rope",
            context_length=config.context_length, rope_theta=config.rope_theta,
            dropout=config.dropout)
        self.norm2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask=mask, cache=cache))
        return x + self.drop(self.mlp(self.norm2(x)))


# ------------------------------------------------------------------------------ the model

class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError("GPT takes a GPTConfig, e.g. GPT(GPTConfig.gpt2(n_layers=2, ...))")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = (nn.Embedding(config.context_length, config.d_model)
                        if config.positions == "learned" else None)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_f = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight          # one matrix, used twice
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 L)
        for name, p in self.named_parameters():
            if name.endswith(RESIDUAL_PROJECTIONS):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters, a tied matrix counted once; ``exclude_embeddings`` leaves out
        the token and position embeddings (Kaplan et al.'s N)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    def new_caches(self) -> list[KVCache]:
        """One empty key/value cache per block, for ``forward(..., caches=...)``."""
        return [KVCache() for _ in self.blocks]

    def forward(self, idx: torch.Tensor, caches: list[KVCache] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab_size). With ``caches`` the tokens are
        appended to what the caches hold (positions continue); ``mask`` (bool, True = may
        attend) e.g. hides padding."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"expected idx to be integer token ids of shape (batch, seq), got "
                             f"{getattr(idx, 'shape', type(idx).__name__)}")
        B, T = idx.shape
        past = 0 if caches is None else len(caches[0])
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"expected one cache per block ({len(self.blocks)}), "
                             f"got {len(caches)}: use model.new_caches()")
        if past + T > self.config.context_length:
            raise ValueError(f"{past + T} positions exceed context_length="
                             f"{self.config.context_length}; crop idx to the last "
                             f"{self.config.context_length} tokens")
        x = self.tok_emb(idx)                                   # (B, T, d)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i], mask)
        return self.lm_head(self.norm_f(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True
                 ) -> torch.Tensor:
        """Extend idx (B, T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

        ``temperature=0`` is greedy decoding; ``top_k`` keeps the k likeliest tokens, ``top_p``
        the smallest set whose probability reaches p (nucleus sampling). With ``use_cache`` each
        step feeds only the newest token and reuses the cached keys and values; once the text
        outgrows the context window, each step recomputes the last ``context_length`` tokens.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if idx.dim() != 2 or idx.shape[1] < 1:
            raise ValueError(f"expected a prompt of shape (batch, seq >= 1), got {tuple(idx.shape)}")
        ctx = self.config.context_length
        caches = None
        for _ in range(max_new_tokens):
            if use_cache and idx.shape[1] <= ctx:
                if caches is None:                              # first step: the whole prompt
                    caches = self.new_caches()
                    logits = self(idx, caches)
                else:                                           # later steps: one new token
                    logits = self(idx[:, -1:], caches)
            else:
                logits = self(idx[:, -ctx:])
            last = logits[:, -1].to(torch.promote_types(logits.dtype, torch.float32))
            next_token = sample(last, temperature, top_k, top_p, generator)
            idx = torch.cat([idx, next_token], dim=1)
        return idx

    # ---- Hugging Face (the functions are defined at the end of the file)
    @classmethod
    def from_hf(cls, hf_model: Any) -> "GPT":
        """A GPT with the weights of a ``transformers`` GPT2LMHeadModel or LlamaForCausalLM."""
        config = config_from_hf(hf_model.config)
        model = cls(config)
        p = next(hf_model.parameters())
        model.to(dtype=p.dtype, device=p.device)
        model.load_state_dict(state_dict_from_hf(hf_model.state_dict(), config))
        return model

    def to_hf(self) -> Any:
        """The equivalent ``transformers`` GPT2LMHeadModel or LlamaForCausalLM, weights copied."""
        import transformers

        hf_cls = (transformers.GPT2LMHeadModel if _style(self.config) == "gpt2"
                  else transformers.LlamaForCausalLM)
        hf = hf_cls(hf_config(self.config))
        p = next(self.parameters())
        hf.to(dtype=p.dtype, device=p.device)
        missing, unexpected = hf.load_state_dict(
            state_dict_to_hf(self.state_dict(), self.config), strict=False)
        missing = [m for m in missing
                   if not (m == "lm_head.weight" and self.config.tie_embeddings)]
        if missing or unexpected:
            raise ValueError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
        if self.config.tie_embeddings:
            hf.tie_weights()
        return hf.eval()


# the projections that write into the residual stream (GPT-2 scales their init by 1/sqrt(2 L))
RESIDUAL_PROJECTIONS = ("attn.o_proj.weight", "mlp.proj.weight", "mlp.down_proj.weight")


def init_weights_(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """GPT-2's initialisation drawn in float64 from its own generator, so that every CPU starts
    from the same weights (float32 ``normal_`` has vectorised kernels whose last bits differ
    between processors). Matrices N(0, std), residual projections N(0, std / sqrt(2 L)); biases
    0, norm gains 1. Works on any model with a ``config`` whose parameters follow GPT's names."""
    g = torch.Generator().manual_seed(seed)
    residual_std = std / math.sqrt(2 * model.config.n_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                s = residual_std if name.endswith(RESIDUAL_PROJECTIONS) else std
                p.copy_(s * torch.randn(p.shape, generator=g, dtype=torch.float64))
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    return model


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of ``logits`` (B, vocab) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach p (keep at least one)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


# ------------------------------------------------------------------ Hugging Face converters

def _style(config: GPTConfig) -> str:
    if (config.norm, config.mlp, config.positions) == ("layernorm", "gelu", "learned"):
        if not config.bias or config.n_kv_heads != config.n_heads or not config.causal:
            raise ValueError("GPT2LMHeadModel has biases, n_kv_heads == n_heads and is causal")
        return "gpt2"
    if (config.norm, config.mlp, config.positions) == ("rmsnorm", "swiglu", "rope"):
        if not config.causal:
            raise ValueError("LlamaForCausalLM is causal: use causal=True")
        return "llama"
    raise ValueError("Hugging Face has GPT-2 (layernorm, gelu, learned) and Llama (rmsnorm, "
                     f"swiglu, rope); got ({config.norm}, {config.mlp}, {config.positions})")


def hf_config(config: GPTConfig):
    """The ``transformers`` config (GPT2Config or LlamaConfig) of the same architecture."""
    import transformers

    # GPT-2's <|endoftext|> id (50256) only where the vocabulary has it
    special = 50256 if config.vocab_size > 50256 else None
    if _style(config) == "gpt2":
        return transformers.GPT2Config(
            bos_token_id=special, eos_token_id=special,
            vocab_size=config.vocab_size, n_positions=config.context_length,
            n_embd=config.d_model, n_layer=config.n_layers, n_head=config.n_heads,
            n_inner=config.d_ff, activation_function="gelu_new",
            layer_norm_epsilon=config.norm_eps, resid_pdrop=config.dropout,
            embd_pdrop=config.dropout, attn_pdrop=config.dropout,
            tie_word_embeddings=config.tie_embeddings)
    return transformers.LlamaConfig(
        vocab_size=config.vocab_size, max_position_embeddings=config.context_length,
        hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
        intermediate_size=config.d_ff, hidden_act="silu", rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=config.bias, mlp_bias=config.bias, attention_dropout=config.dropout,
        tie_word_embeddings=config.tie_embeddings, head_dim=config.head_dim)


def config_from_hf(hf: Any) -> GPTConfig:
    """A GPTConfig from a ``transformers`` GPT2Config or LlamaConfig."""
    kind = getattr(hf, "model_type", None)
    if kind == "gpt2":
        if hf.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"only GPT-2's tanh GELU is supported, got {hf.activation_function}")
        return GPTConfig.gpt2(
            vocab_size=hf.vocab_size, context_length=hf.n_positions, d_model=hf.n_embd,
            n_layers=hf.n_layer, n_heads=hf.n_head, d_ff=hf.n_inner or 4 * hf.n_embd,
            norm_eps=hf.layer_norm_epsilon, tie_embeddings=hf.tie_word_embeddings)
    if kind == "llama":
        rope = getattr(hf, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"only plain rotary positions are supported, got {rope}")
        if (getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads) != \
                hf.hidden_size // hf.num_attention_heads:
            raise ValueError("head_dim must equal hidden_size // num_attention_heads")
        if hf.attention_bias != getattr(hf, "mlp_bias", False):
            raise ValueError("attention_bias and mlp_bias must agree")
        return GPTConfig.llama(
            vocab_size=hf.vocab_size, context_length=hf.max_position_embeddings,
            d_model=hf.hidden_size, n_layers=hf.num_hidden_layers,
            n_heads=hf.num_attention_heads, n_kv_heads=hf.num_key_value_heads,
            d_ff=hf.intermediate_size, norm_eps=hf.rms_norm_eps,
            rope_theta=float(rope.get("rope_theta", 10000.0)), bias=hf.attention_bias,
            tie_embeddings=hf.tie_word_embeddings)
    raise ValueError(f"expected a GPT-2 or Llama config, got model_type={kind!r}")


def _gpt2_names(config: GPTConfig) -> list[tuple[str, str, str]]:
    """(our name, Hugging Face name, how): how is "same", "T" (transpose: HF's Conv1D stores
    (in, out)) or "q"/"k"/"v" (a third of HF's fused c_attn)."""
    names = [("tok_emb.weight", "transformer.wte.weight", "same"),
             ("pos_emb.weight", "transformer.wpe.weight", "same")]
    for i in range(config.n_layers):
        ours, hf = f"blocks.{i}.", f"transformer.h.{i}."
        names += [(ours + "norm1.weight", hf + "ln_1.weight", "same"),
                  (ours + "norm1.bias", hf + "ln_1.bias", "same"),
                  (ours + "norm2.weight", hf + "ln_2.weight", "same"),
                  (ours + "norm2.bias", hf + "ln_2.bias", "same")]
        for j, part in enumerate("qkv"):
            names += [(ours + f"attn.{part}_proj.weight", hf + "attn.c_attn.weight", f"{part}T"),
                      (ours + f"attn.{part}_proj.bias", hf + "attn.c_attn.bias", part)]
        names += [(ours + "attn.o_proj.weight", hf + "attn.c_proj.weight", "T"),
                  (ours + "attn.o_proj.bias", hf + "attn.c_proj.bias", "same"),
                  (ours + "mlp.fc.weight", hf + "mlp.c_fc.weight", "T"),
                  (ours + "mlp.fc.bias", hf + "mlp.c_fc.bias", "same"),
                  (ours + "mlp.proj.weight", hf + "mlp.c_proj.weight", "T"),
                  (ours + "mlp.proj.bias", hf + "mlp.c_proj.bias", "same")]
    names += [("norm_f.weight", "transformer.ln_f.weight", "same"),
              ("norm_f.bias", "transformer.ln_f.bias", "same"),
              ("lm_head.weight", "lm_head.weight", "same")]
    return names


def _llama_names(config: GPTConfig) -> list[tuple[str, str, str]]:
    names = [("tok_emb.weight", "model.embed_tokens.weight", "same")]
    for i in range(config.n_layers):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        names += [(ours + "norm1.weight", hf + "input_layernorm.weight", "same"),
                  (ours + "norm2.weight", hf + "post_attention_layernorm.weight", "same")]
        parts = [f"attn.{p}_proj" for p in "qkvo"] + [f"mlp.{p}_proj" for p in
                                                       ("gate", "up", "down")]
        for part in parts:
            hf_part = part.replace("attn.", "self_attn.")
            names.append((ours + part + ".weight", hf + hf_part + ".weight", "same"))
            if config.bias:
                names.append((ours + part + ".bias", hf + hf_part + ".bias", "same"))
    names += [("norm_f.weight", "model.norm.weight", "same"),
              ("lm_head.weight", "lm_head.weight", "same")]
    return names


def state_dict_from_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our state dict from a GPT2LMHeadModel's or LlamaForCausalLM's."""
    names = _gpt2_names(config) if _style(config) == "gpt2" else _llama_names(config)
    out = {}
    d = config.d_model
    for ours, theirs, how in names:
        if theirs not in sd:
            if theirs == "lm_head.weight" and config.tie_embeddings:
                continue                                      # tied: it is the embedding
            raise ValueError(f"the Hugging Face state dict has no {theirs!r}; does the config "
                             "match the model?")
        t = sd[theirs]
        if how[0] in "qkv":
            j = "qkv".index(how[0])
            t = t[..., j * d:(j + 1) * d]
            how = how[1:] or "same"
        out[ours] = t.t().contiguous() if how == "T" else t.clone()
    if config.tie_embeddings:
        out["lm_head.weight"] = out["tok_emb.weight"]
    return out


def state_dict_to_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel's or LlamaForCausalLM's state dict from ours."""
    style = _style(config)
    names = _gpt2_names(config) if style == "gpt2" else _llama_names(config)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list] = {}
    for ours, theirs, how in names:
        if ours not in sd:
            raise ValueError(f"our state dict has no {ours!r}; does the config match the model?")
        t = sd[ours]
        if how[0] in "qkv":
            fused.setdefault(theirs, [None] * 3)["qkv".index(how[0])] = (
                t.t() if how.endswith("T") else t)
            continue
        out[theirs] = t.t().contiguous() if how == "T" else t.clone()
    for theirs, parts in fused.items():
        out[theirs] = torch.cat(parts, dim=-1).contiguous()
    return out
