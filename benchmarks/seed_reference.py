"""A straightforward reference, written the way the seed scripts are (not their code):
an ``nn.Module`` that computes every position in every block with separate q/k/v
projections, a ``DataLoader`` over a Dataset of per-item tensors, ``torch.optim.AdamW``,
and the decay applied matrix by matrix after the step.

Used by ``step_time.py`` (the speed reference) and by the tests (lrdlib's model must give the
same logits as this one for the same weights).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class RefRMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = dim ** 0.5
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.normalize(x, dim=-1) * self.scale * self.g


class RefAttention(nn.Module):
    def __init__(self, dim, heads, qk_norm=True):
        super().__init__()
        self.h, self.dh = heads, dim // heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_norm, self.k_norm = RefRMSNorm(dim), RefRMSNorm(dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.view(B, T, self.h, self.dh).transpose(1, 2) for t in (q, k, v))
        a = ((q @ k.transpose(-2, -1)) / math.sqrt(self.dh)).softmax(-1)
        return self.o_proj((a @ v).transpose(1, 2).reshape(B, T, C))


class RefTransformer(nn.Module):
    def __init__(self, vocab=114, dim=128, depth=2, heads=4, mlp_dim=512, qk_norm=True):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, 3, dim) * 0.02)
        self.layers = nn.ModuleList([nn.ModuleDict({
            "norm1": RefRMSNorm(dim), "attn": RefAttention(dim, heads, qk_norm), "norm2": RefRMSNorm(dim),
            "mlp": nn.Sequential(nn.Linear(dim, mlp_dim, bias=False), nn.SiLU(), nn.Linear(mlp_dim, dim, bias=False)),
        }) for _ in range(depth)])
        self.norm_final = RefRMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, x):
        h = self.embedding(x) + self.pos_embedding[:, : x.shape[1]]
        for L in self.layers:
            h = h + L["attn"](L["norm1"](h))
            h = h + L["mlp"](L["norm2"](h))
        return self.lm_head(self.norm_final(h)[:, -1])


def load_from_lrdlib(ref: RefTransformer, state: dict) -> None:
    """Copy an lrdlib ``Transformer`` state dict into the reference model."""
    out = {}
    for k, v in state.items():
        k2 = k.replace("mlp.fc_in", "mlp.0").replace("mlp.fc_out", "mlp.2")
        out[k2] = v.reshape(1, *v.shape) if k == "pos_embedding" else v
    ref.load_state_dict(out)


class PairDataset(Dataset):
    """One (tokens, label) pair per item, as tensors built on access."""

    def __init__(self, x, y):
        self.rows = [(tuple(r), int(l)) for r, l in zip(x.tolist(), y.tolist())]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r, l = self.rows[i]
        return torch.tensor(r, dtype=torch.long), torch.tensor(l, dtype=torch.long)


def ns_seed(W, steps=5):
    """Newton-Schulz as the seed writes it: Frobenius normalisation, Y ← ½Y(3I − YᵀY)."""
    X = W.float()
    X = X / (X.norm() + 1e-8)
    I = torch.eye(X.shape[1], device=X.device, dtype=X.dtype)
    for _ in range(steps):
        X = 0.5 * X @ (3.0 * I - X.T @ X)
    return X


class RefLRD:
    def __init__(self, params, alpha):
        self.params, self.alpha = params, alpha

    @torch.no_grad()
    def step(self):
        for W in self.params:
            W.sub_(self.alpha * ns_seed(W))


class RefLuon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, momentum=0.95, lam=0.5):
        super().__init__(params, dict(lr=lr, momentum=momentum, lam=lam))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state[p]
                buf = st.setdefault("buf", torch.zeros_like(p))
                buf.mul_(g["momentum"]).add_(p.grad + g["lam"] * p)
                p.sub_(g["lr"] * ns_seed(buf.clone()))


def reference_setup(model: RefTransformer, method: str, strength: float):
    """(optimisers, decay-or-None) for ``method`` ∈ {L2, LRD, Luon}, as in the seeds."""
    qk = [p for n, p in model.named_parameters() if "q_proj" in n or "k_proj" in n]
    rest = [p for n, p in model.named_parameters() if not ("q_proj" in n or "k_proj" in n)]
    if method == "L2":
        return [torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=strength)], None
    if method == "LRD":
        opt = torch.optim.AdamW([{"params": rest, "weight_decay": 0.1}, {"params": qk, "weight_decay": 0.0}], lr=1e-3)
        return [opt], RefLRD(qk, strength)
    return [RefLuon(qk, lam=strength), torch.optim.AdamW(rest, lr=1e-3, weight_decay=0.0)], None


def reference_step(model, opts, decay, x, y):
    loss = F.cross_entropy(model(x), y)
    for o in opts:
        o.zero_grad()
    loss.backward()
    for o in opts:
        o.step()
    if decay is not None:
        decay.step()
    return loss.detach()


def reference_batches(x, y, batch_size=512, seed=0):
    """Endless minibatches from a DataLoader(shuffle=True), restarted at each epoch's end."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(PairDataset(x, y), batch_size=batch_size, shuffle=True, generator=g)
    while True:
        yield from loader
