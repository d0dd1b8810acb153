"""The seed transformer (MISSION §3): pre-RMSNorm blocks with QK-Norm, no causal mask,
logits read at the ``=`` position.

    x₀ = E[tokens] + P                         E ~ N(0, 1), P ~ N(0, 0.02²), P ∈ ℝ^{3×d}
    xₗ₊₁ = xₗ + Attn(Norm(xₗ)),  then  + MLP(Norm(·))
    Norm(x) = normalize(x) · √d · g            (F.normalize, g initialised to 1)
    Attn:  q = Norm_q(W_Q h), k = Norm_k(W_K h)  — QK-Norm over the full d-wide q and k,
           then split into heads; softmax(q kᵀ/√d_h) v; W_O.
    MLP:   W₂ SiLU(W₁ h),  d → 4d → d, no biases.
    logits = W_head Norm(x_L)[:, -1]

Because of QK-Norm, the output is unchanged when W_Q or W_K is scaled by α > 0:
those two matrices per block are the truly scale-invariant parameters
(``scale_invariant_parameters()``). Nothing else is (notebook 01 checks each one).

Only the last position is read, so the last block computes its query, attention output
and MLP at that position alone (keys and values still need all positions), and block 0's
q, k, v are looked up from a (vocabulary × position) table. ``forward`` does that, with the
attention and the norms of ``lrdlib.fused`` (hand-written backward, same maths);
``forward_full`` computes every position the plain way (``F.scaled_dot_product_attention``)
and can record attention probabilities; the tests check that both give the same logits and
the same gradients.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fused import gather_rows, rms_norm, short_attention


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``vocab_size`` is p + 1 for a task mod p (set by the trainer)."""

    vocab_size: int = 114
    dim: int = 128
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 512
    seq_len: int = 3
    qk_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "depth", "heads", "mlp_dim", "seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")


class RMSNorm(nn.Module):
    """normalize(x)·√d·g — the seed's form (F.normalize, eps 1e-12), g ∈ ℝ^d starts at 1."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.g, self.scale)  # = F.normalize(x, dim=-1) * (self.g * self.scale)


class Attention(nn.Module):
    """Multi-head self-attention with QK-Norm on the full-width q and k, no mask."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.heads, self.head_dim = cfg.heads, d // cfg.heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm:
            self.q_norm = RMSNorm(d)
            self.k_norm = RMSNorm(d)

    def _split(self, t: Tensor) -> Tensor:  # (B, T, d) -> (B, H, T, d_h)
        B, T, _ = t.shape
        return t.view(B, T, self.heads, self.head_dim).transpose(1, 2)

    def _qk(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k

    def probs(self, q: Tensor, k: Tensor) -> Tensor:
        """softmax(q kᵀ / √d_h) for head-split q (B,H,Tq,d_h) and k (B,H,T,d_h)."""
        return (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(dim=-1)

    def qkv(self, h: Tensor) -> Tensor:
        """[Norm_q(W_Q h), Norm_k(W_K h), W_V h] concatenated, (..., 3d); one matmul for all
        three (the weights stay three named parameters)."""
        d = h.shape[-1]
        q, k, v = F.linear(h, torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])).split(d, dim=-1)
        return torch.cat([*self._qk(q, k), v], dim=-1)

    def attend(self, qkv: Tensor, record: dict | None = None) -> Tensor:
        """Attention output W_O softmax(q kᵀ/√d_h) v from (normalised) q, k, v: (B, T, 3d) -> (B, T, d)."""
        B, T, d3 = qkv.shape
        d = d3 // 3
        q, k, v = (self._split(t) for t in qkv.split(d, dim=-1))
        if record is not None:
            a = self.probs(q, k)
            record["probs"] = a.detach()
            out = a @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, d))

    def forward(self, h: Tensor, record: dict | None = None) -> Tensor:
        """All positions: (B, T, d) -> (B, T, d). ``record['probs']`` gets (B, H, T, T)."""
        return self.attend(self.qkv(h), record)

    def forward_last(self, h: Tensor) -> Tensor:
        """Only the last position's output: (B, T, d) -> (B, d)."""
        q, k = self._qk(self.q_proj(h[:, -1:]), self.k_proj(h))
        return self.o_proj(short_attention(q, k, self.v_proj(h), self.heads)[:, 0])


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc_in = nn.Linear(cfg.dim, cfg.mlp_dim, bias=False)
        self.fc_out = nn.Linear(cfg.mlp_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(F.silu(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.dim)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.dim)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, record: dict | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), record)
        return x + self.mlp(self.norm2(x))

    def forward_last(self, x: Tensor) -> Tensor:
        """The block's output at the last position only: (B, T, d) -> (B, d)."""
        y = x[:, -1] + self.attn.forward_last(self.norm1(x))
        return y + self.mlp(self.norm2(y))


class Transformer(nn.Module):
    """The seed model. Parameter names keep the seed's ``q_proj``/``k_proj`` so that
    decays and optimisers select Q/K by name (``layers.{l}.attn.q_proj.weight``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.dim)                 # N(0, 1)
        self.pos_embedding = nn.Parameter(torch.randn(cfg.seq_len, cfg.dim) * 0.02)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm_final = RMSNorm(cfg.dim)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    def embed(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2 or tokens.shape[1] > self.cfg.seq_len:
            raise ValueError(f"tokens of shape {tuple(tokens.shape)}: expected (B, T≤{self.cfg.seq_len})")
        return gather_rows(self.embedding.weight, tokens) + self.pos_embedding[: tokens.shape[1]]

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits at the last position, (B, vocab).

        Two savings, same function as ``forward_full``: (1) block 0's normalised q, k, v
        depend only on (token, position), so they are computed once per vocabulary entry
        and position (V·T rows instead of B·T) and gathered; (2) the last block runs at the
        last position only. Attention and norms use ``lrdlib.fused`` (same maths, hand-written
        backward).
        """
        x = self.embed(tokens)
        first = 0
        if self.cfg.depth > 1:
            b0 = self.layers[0]
            T = tokens.shape[1]
            att = b0.attn
            # one row per (token, position): V·T rows, separate q/k/v tables (no split/cat passes)
            h = b0.norm1(self.embedding.weight[:, None] + self.pos_embedding[None, :T]).reshape(-1, x.shape[-1])
            q_tab, k_tab = att._qk(att.q_proj(h), att.k_proj(h))
            row = tokens * T + torch.arange(T, device=tokens.device)
            q, k, v = (gather_rows(t, row) for t in (q_tab, k_tab, att.v_proj(h)))           # (B, T, d) each
            x = x + att.o_proj(short_attention(q, k, v, att.heads))
            x = x + b0.mlp(b0.norm2(x))
            first = 1
        for block in self.layers[first:-1]:
            x = block(x)
        x = self.layers[-1].forward_last(x)
        return self.lm_head(self.norm_final(x))

    def forward_full(self, tokens: Tensor, record: dict | None = None) -> Tensor:
        """Every position through every block; logits at the last position, (B, vocab).

        With ``record`` a dict, ``record[l]`` holds block l's attention probabilities (B,H,T,T).
        """
        x = self.embed(tokens)
        for l, block in enumerate(self.layers):
            rec = {} if record is not None else None
            x = block(x, rec)
            if record is not None:
                record[l] = rec["probs"]
        return self.lm_head(self.norm_final(x))[:, -1]

    # ----- named access for the notebooks -------------------------------------------
    def qk_weights(self) -> dict[str, Tensor]:
        """The Query/Key matrices W_Q, W_K of every block, by parameter name."""
        return {n: p for n, p in self.named_parameters() if n.endswith(("q_proj.weight", "k_proj.weight"))}

    def scale_invariant_parameters(self) -> list[str]:
        """Names of parameters W with f(αW) = f(W) for all α > 0: W_Q and W_K under QK-Norm
        (the norm divides out any scale of q = W_Q h). Empty when QK-Norm is off."""
        return list(self.qk_weights()) if self.cfg.qk_norm else []

    def attention_probs(self, tokens: Tensor, layer: int) -> Tensor:
        """Attention probabilities of block ``layer`` on real inputs: (B, H, T, T)."""
        if not 0 <= layer < self.cfg.depth:
            raise ValueError(f"layer={layer} out of range 0..{self.cfg.depth - 1}")
        rec: dict = {}
        self.forward_full(tokens, rec)
        return rec[layer]

    @torch.no_grad()
    def token_attention_map(self, head: int = 0, n_tokens: int | None = None) -> Tensor:
        """The seed's token-token picture for block 0: every token embedding (at position 0)
        as query against every token as key, softmax over keys, one head: (V, V)."""
        if not 0 <= head < self.cfg.heads:
            raise ValueError(f"head={head} out of range 0..{self.cfg.heads - 1}")
        n = n_tokens or self.cfg.vocab_size - 1
        att = self.layers[0].attn
        x = self.layers[0].norm1(self.embedding.weight[:n] + self.pos_embedding[0])
        q, k = att._qk(F.linear(x, att.q_proj.weight), F.linear(x, att.k_proj.weight))
        sl = slice(head * att.head_dim, (head + 1) * att.head_dim)
        return (q[:, sl] @ k[:, sl].T * att.head_dim ** -0.5).softmax(dim=-1)


def build_model(cfg: ModelConfig, seed: int, device: str | torch.device = "cpu") -> Transformer:
    """The model initialised from ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(cfg)
    return model.to(device)
