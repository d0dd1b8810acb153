"""The seed transformer: pre-RMSNorm blocks with QK-Norm, no causal mask,
logits read at the ``=`` position.

    x₀ = E[tokens] + P                         E ~ N(0, 1), P ~ N(0, 0.02²), P ∈ ℝ^{3×d}
    xₗ₊₁ = xₗ + Attn(Norm(xₗ)),  then  + MLP(Norm(·))
    Norm(x) = normalize(x) · √d · g            (F.rms_norm, g initialised to 1)
    Attn:  q = Norm_q(W_Q h), k = Norm_k(W_K h)  — QK-Norm over the full d-wide q and k,
           then split into heads; softmax(q kᵀ/√d_h) v; W_O.
    MLP:   W₂ SiLU(W₁ h),  d → 4d → d, no biases.
    logits = W_head Norm(x_L)[:, -1]

Because of QK-Norm, the output is unchanged when W_Q or W_K is scaled by α > 0:
those two matrices per block are the truly scale-invariant parameters
(``scale_invariant_parameters()``). Nothing else is (notebook 01 checks each one).

Only the last position is read, so the last block computes its query, attention output
and MLP at that position alone (keys and values still need all positions), and block 0's
q, k, v are looked up from a (vocabulary × position) table. ``forward`` does that;
``forward_full`` computes every position and can record attention probabilities; the tests
check that both give the same logits and the same gradients. ``forward`` uses the hand-written
``short_attention`` (the whole step is ~20-25 % slower with ``F.scaled_dot_product_attention``,
eager and compiled: ``benchmarks/kernels.py``) and ``F.rms_norm`` (a hand-written RMSNorm
backward gained nothing over it and was removed); ``forward_full`` uses PyTorch's own kernels.

``compile_model`` compiles the forward for training (``RunConfig(compile=True)``): inductor
fuses the ~600 small memory-bound ops of a step into a few dozen loops; the matrix products
stay the same BLAS calls. The rounding changes, so a compiled run has its own history (and
cache key), and it is as deterministic as an eager run: under compile the row gathers'
backward stays ATen's deterministic scatter-add (``gather_rows``), where inductor's own uses
atomic adds across threads (run-to-run rounding, and ~3 ms a step on 2 CPU threads). Costs: a
C++ compiler on CPU, ~20-30 s of compilation the first time a process meets a (model shape,
batch size), kept on disk by inductor. The trainer compiles full batches only; an epoch's
shorter last batch runs eagerly (same maths).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lrdlib.core.fields import normalise


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
        normalise(self)
        for name in ("vocab_size", "dim", "depth", "heads", "mlp_dim", "seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")


# ----------------------------------------------------------------------------- row gather
@torch.library.custom_op("lrdlib::gather_rows_backward", mutates_args=())
def _gather_rows_backward(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    """∂table of ``F.embedding(index, table)``: ATen's deterministic scatter-add kernel."""
    return torch.ops.aten.embedding_dense_backward(grad, index, num_rows, -1, False)


@_gather_rows_backward.register_fake
def _(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    return grad.new_empty(num_rows, grad.shape[-1])


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = table.shape[0]
        return F.embedding(index, table)

    @staticmethod
    def backward(ctx, g: Tensor):
        (index,) = ctx.saved_tensors
        return _gather_rows_backward(g.contiguous(), index, ctx.num_rows), None


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """table[index]: (R, d) rows picked by an integer ``index`` of any shape → (*index.shape, d).

    ``F.embedding(index, table)`` eagerly; inside ``torch.compile`` the same values with the
    backward kept as ATen's deterministic kernel (an opaque custom op, see the module docstring)."""
    if table.ndim != 2 or index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"table {tuple(table.shape)} ({table.dtype}) and index ({index.dtype}): expected a 2-D "
                         "table and an integer index")
    if torch.compiler.is_compiling():
        return _GatherRows.apply(table, index)
    return F.embedding(index, table)


# ----------------------------------------------------------------------------- modules
class RMSNorm(nn.Module):
    """normalize(x)·√d·g — the seed's form, g ∈ ℝ^d starts at 1 — as ``F.rms_norm``:
    x/√(mean x² + ε)·g = normalize(x)·√d·g. ε = 1e-24 (not rms_norm's default, the dtype's
    machine epsilon, which would break QK-Norm's scale invariance once ‖q‖² is small); measured
    as fast as the hand-written norm, where ``F.normalize(x)·(√d g)`` was ~15 % slower eagerly."""

    eps = 1e-24

    def __init__(self, dim: int):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.g.shape, self.g, self.eps)


# ----------------------------------------------------------------------------- short attention
# The seed's sequences have three positions, so its attention is 2048 (batch × heads) tiny 3×3
# problems; op by op (SDPA included), autograd spends most of the step on bookkeeping passes.
# ``short_attention`` does all heads of a batch element as two matrix products: with q reshaped to
# (T_q·H, d_h) and k to (T·H, d_h), S = q kᵀ holds every (query, head) × (key, head) product and
# the head-diagonal blocks are the scores; the probabilities go back on the head diagonal of a
# zero (T_q·H, T·H) matrix A and the output is A v. Backward uses the same shapes:
#     ∂v = Aᵀ ∂o,  ∂a = diag_h(∂o vᵀ),  ∂s = a ⊙ (∂a − Σ_j a ∂a),  ∂q = ∂S k,  ∂k = ∂Sᵀ q.
# ``benchmarks/kernels.py`` keeps it honest: the whole step is ~20-25 % slower with SDPA instead
# (eager and compiled); the hand-written RMSNorm it once had gained nothing over F.rms_norm and went.
def _head_diagonal(M: Tensor, Tq: int, T: int, H: int) -> Tensor:
    """The (B, Tq, T, H) head-diagonal view of a (B, Tq·H, T·H) matrix."""
    return torch.diagonal(M.view(M.shape[0], Tq, H, T, H), dim1=2, dim2=4)


def _on_head_diagonal(a: Tensor) -> Tensor:
    """(B, Tq, T, H) → (B, Tq·H, T·H): a[b, i, j, h] at row (i, h), column (j, h); zeros elsewhere."""
    B, Tq, T, H = a.shape
    full = a.new_zeros(B, Tq, H, T, H)
    torch.diagonal(full, dim1=2, dim2=4).copy_(a)
    return full.view(B, Tq * H, T * H)


class _ShortAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
        B, Tq, d = q.shape
        T, H = k.shape[1], heads
        dh = d // H
        qf, kf, vf = q.reshape(B, Tq * H, dh), k.reshape(B, T * H, dh), v.reshape(B, T * H, dh)
        s = _head_diagonal(torch.bmm(qf, kf.transpose(1, 2)), Tq, T, H) * dh ** -0.5  # (B, Tq, T, H)
        a = (s - s.amax(2, keepdim=True)).exp_()
        a = a.div_(a.sum(2, keepdim=True))                                            # softmax over keys
        A = _on_head_diagonal(a)
        ctx.save_for_backward(qf, kf, vf, a, A)
        ctx.heads = H
        return torch.bmm(A, vf).view(B, Tq, d)

    @staticmethod
    def backward(ctx, go: Tensor):
        qf, kf, vf, a, A = ctx.saved_tensors
        B, Tq, T, H = a.shape
        d = qf.shape[-1] * H
        go = go.reshape(B, Tq * H, -1)
        gv = torch.bmm(A.transpose(1, 2), go)
        ga = _head_diagonal(torch.bmm(go, vf.transpose(1, 2)), Tq, T, H)
        gs = a * (ga - (a * ga).sum(2, keepdim=True))
        gS = _on_head_diagonal(gs.mul_(qf.shape[-1] ** -0.5))
        gq = torch.bmm(gS, kf)
        gk = torch.bmm(gS.transpose(1, 2), qf)
        return gq.view(B, Tq, d), gk.view(B, T, d), gv.view(B, T, d), None


def short_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """softmax(q kᵀ/√d_h) v for each of ``heads`` heads, no mask, heads side by side in the last
    axis (as in ``view(B, T, H, d_h)``): q (B, T_q, d), k and v (B, T, d) → (B, T_q, d).
    Same values and gradients as ``F.scaled_dot_product_attention`` on the head-split tensors;
    meant for short sequences (its head-block products grow as (T·H)²)."""
    if q.ndim != 3 or k.shape != v.shape or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected q (B, Tq, d) "
                         "and k, v (B, T, d)")
    if q.shape[2] % heads:
        raise ValueError(f"heads={heads} must divide the width d={q.shape[2]}")
    return _ShortAttention.apply(q, k, v, heads)


_attention = short_attention  # the attention the fast forward uses (benchmarks/kernels.py swaps it)


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
        return self.o_proj(_attention(q, k, self.v_proj(h), self.heads)[:, 0])


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
        last position only.
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
            x = x + att.o_proj(_attention(q, k, v, att.heads))
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


def build_model(cfg: ModelConfig, seed: int, device: str | torch.device = "cpu") -> Transformer:
    """The model initialised from ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(cfg)
    return model.to(device)


def check_compiler(device: torch.device | str) -> None:
    """Raise a clear error if inductor cannot build CPU kernels here (no C++ compiler)."""
    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ValueError("compile=True on device='cpu' needs a C++ compiler (g++ or clang++) for torch.compile; "
                         "none is on PATH: install one (apt install g++) or use compile=False")


def compile_model(model: nn.Module) -> nn.Module:
    """The model's forward compiled for training (static shapes, one graph, no graph breaks).
    Shares the parameters with ``model``; call it exactly like ``model``."""
    check_compiler(next(model.parameters()).device)
    return torch.compile(model, dynamic=False, fullgraph=True)
