"""Many runs in one model: K runs that share an architecture and a training recipe, trained as
one stacked model. Every parameter gets a leading run axis (``(K, *shape)``), every matmul
becomes a batched one, and each run keeps what makes it a run of its own:

* its seed (initialisation ``build_model(cfg.model, cfg.seed)`` and batch order: its own
  ``BatchSampler``), its train fraction and split seed (its own train/validation split);
* its decay strength, AdamW weight decays and Luon λ (per-run vectors broadcast over the stack);
* its step budget, early stop and divergence: a run that finishes leaves the stack (which is
  compacted, optimiser state included) and is written to the cache at once.

Each run's loss is its own mean over its own minibatch (ragged last batches are padded and
masked); the K losses are summed and differentiated once — the parameters are disjoint, so
each run's gradient is its own. The optimisers are elementwise (AdamW, Luon's momentum) or
per matrix (Newton-Schulz), so the stacked step is K independent steps:

* AdamW: ``torch.optim.AdamW(fused=True, weight_decay=0)`` on the stacks, with each run's
  decoupled decay ``p ← p·(1 − lr·wd_r)`` applied just before (exactly what fused AdamW does
  inside its kernel on CPU: the result is bit-identical there);
* Luon: ``M ← μM + G + λ_r W``, ``W ← W − η NS(M)`` with NS batched over runs × matrices;
* decays of the form ``W ← W − λ_r f(W)`` (``l2``, ``lrd_ns``, ``lrd_polar``,
  ``lrd_tangential``) are applied to the whole stack; any other decay (``svt``, ``lowrank``,
  stateful ones, new registrations) runs once per run on that run's slice.

``train_batched(configs)`` returns records in exactly ``lrdlib.train.train``'s format; tests
check each member's history against its independent ``train()`` run (L2, LRD, Luon). The
stacked forward (``stacked_forward``) mirrors ``Transformer.forward`` (tabulated block 0,
readout-only last block) and is tested against it.

When it pays: on a GPU the K runs fill the device that one small run leaves idle; on a
2-core CPU one run already keeps the cores busy and the bigger working set costs cache
misses, so there the process pool of ``lrdlib.sweep`` is the better tool
(``benchmarks/sweep_throughput.py`` measures both). ``wall_time_s`` of a batched member is its
share of the group's wall time (each step's time divided by the runs active in it).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from . import spectral
from .cache import RunCache
from .config import RunConfig
from .data import all_pairs, commutativity_ceiling, make_split
from .decay import (Decay, L2Decay, NewtonSchulzDecay, PolarDecay, TangentialNewtonSchulzDecay,
                    make_decay)
from .fused import rms_norm, short_attention
from .model import ModelConfig, build_model
from .train import BatchSampler, _nan_spectra, _Probe, _spectra, _tangential, steps_to_grok

# per-run knobs: everything else of a RunConfig must be equal within a group
_PER_RUN = {"seed", "steps", "early_stop", "grok_threshold",
            "task.train_frac", "task.split_seed", "decay.strength",
            "optim.weight_decay", "optim.target_weight_decay", "optim.luon_lambda"}
_EVAL_ROWS = {"cpu": 1 << 15, "cuda": 1 << 19}  # runs × rows per evaluation chunk (bounds its memory)


# --------------------------------------------------------------------------- grouping
def signature(cfg: RunConfig) -> str | None:
    """What K runs must share to be trained as one stacked model (None: never batched).

    ``torch.optim.Muon`` (``optim.kind == "muon"``) takes 2-D parameters only and is not
    batched; its runs are trained one by one. Neither are ``compile=True`` runs: the stacked
    model runs eagerly, and a compiled run's history has its own rounding."""
    if cfg.optim.kind == "muon" or cfg.compile:
        return None
    d = cfg.to_dict()
    for path in _PER_RUN:
        *outer, leaf = path.split(".")
        node = d
        for o in outer:
            node = node[o]
        node.pop(leaf)
    return json.dumps(d, sort_keys=True, default=str)


def compatible_groups(configs: Sequence[RunConfig], max_size: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` grouped by ``signature`` (order of first appearance), each group
    cut into chunks of at most ``max_size``; unbatchable configs are groups of one.

    Within a group runs may differ in seed, train fraction, split seed, decay strength,
    weight decays, Luon λ, step budget, early stop and grok threshold."""
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size={max_size!r} must be a positive integer or None")
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, c in enumerate(configs):
        sig = signature(c)
        if sig is None:
            out.append([i])
            continue
        if sig not in groups:
            groups[sig] = []
            out.append(groups[sig])
        groups[sig].append(i)
    if max_size is None:
        return out
    return [g[j:j + max_size] for g in out for j in range(0, len(g), max_size)]


# --------------------------------------------------------------------------- stacked model
MATMUL = "auto"  # "bmm": one batched matmul per layer; "loop": F.linear per run; "auto": bmm on CUDA, loop on CPU


def _linear(x: Tensor, W: Tensor) -> Tensor:
    """Per-run F.linear: x (K, ..., n), W (K, m, n) -> (K, ..., m).

    On CUDA one ``bmm`` (K small matmuls in one kernel: the point of batching). On CPU a loop
    of ``F.linear`` over the runs: as fast there, and bit-identical to the runs' own matmuls
    (``bmm`` and ``mm`` block their sums differently, which shifts results by an ulp)."""
    if _loop(x):
        return torch.stack([F.linear(xk, Wk) for xk, Wk in zip(x.unbind(0), W.unbind(0))])
    s = x.shape
    return torch.bmm(x.reshape(s[0], -1, s[-1]), W.mT).view(*s[:-1], W.shape[1])


def _loop(x: Tensor) -> bool:
    return (MATMUL if MATMUL != "auto" else ("bmm" if x.is_cuda else "loop")) == "loop"


def _rmsnorm(x: Tensor, g: Tensor) -> Tensor:
    """Per-run RMSNorm normalize(x)·(g·√d): x (K, ..., d), g (K, d). On CPU run by run (the
    runs' own reductions, bit for bit), elsewhere one call with g broadcast per run."""
    d = x.shape[-1]
    if _loop(x):
        return torch.stack([rms_norm(xk, gk, math.sqrt(d)) for xk, gk in zip(x.unbind(0), g.unbind(0))])
    return rms_norm(x, g.view(g.shape[0], *([1] * (x.ndim - 2)), d), math.sqrt(d))


def _lookup(table: Tensor, idx: Tensor) -> Tensor:
    """Per-run embedding lookup: table (K, V, d), idx (K, ...) -> (K, ..., d)."""
    K, V, d = table.shape
    off = (torch.arange(K, device=idx.device) * V).view(K, *([1] * (idx.ndim - 1)))
    return F.embedding(idx + off, table.reshape(K * V, d))


def _attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """``short_attention`` with the runs folded into the batch: q (K, B, Tq, d), k, v
    (K, B, T, d) -> (K, B, Tq, d). Each batch element is its own small product, so the fold
    changes nothing in the arithmetic."""
    K, B = q.shape[:2]
    fold = lambda t: t.reshape(K * B, *t.shape[2:])  # noqa: E731
    return short_attention(fold(q), fold(k), fold(v), heads).view(q.shape)


class _Stacked:
    """Name-based access to one block's stacked parameters."""

    def __init__(self, P: dict[str, Tensor], cfg: ModelConfig, layer: int):
        self.P, self.cfg, self.pre = P, cfg, f"layers.{layer}."

    def __getitem__(self, name: str) -> Tensor:
        return self.P[self.pre + name]

    def qk(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        if self.cfg.qk_norm:
            return _rmsnorm(q, self["attn.q_norm.g"]), _rmsnorm(k, self["attn.k_norm.g"])
        return q, k

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(Norm_q(W_Q h), Norm_k(W_K h), W_V h), three separate products as in the model."""
        q, k = self.qk(_linear(h, self["attn.q_proj.weight"]), _linear(h, self["attn.k_proj.weight"]))
        return q, k, _linear(h, self["attn.v_proj.weight"])

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return _linear(_attention(q, k, v, self.cfg.heads), self["attn.o_proj.weight"])

    def mlp(self, x: Tensor) -> Tensor:
        return _linear(F.silu(_linear(_rmsnorm(x, self["norm2.g"]), self["mlp.fc_in.weight"])), self["mlp.fc_out.weight"])

    def full(self, x: Tensor) -> Tensor:
        x = x + self.attend(*self.qkv(_rmsnorm(x, self["norm1.g"])))
        return x + self.mlp(x)

    def last(self, x: Tensor) -> Tensor:
        res = x[:, :, -1]  # taken before the norm, as in Block.forward_last: autograd then sums x's gradients in the same order
        h = _rmsnorm(x, self["norm1.g"])
        q, k = self.qk(_linear(h[:, :, -1:], self["attn.q_proj.weight"]), _linear(h, self["attn.k_proj.weight"]))
        y = res + self.attend(q, k, _linear(h, self["attn.v_proj.weight"]))[:, :, 0]
        return y + self.mlp(y)


def stacked_forward(cfg: ModelConfig, P: dict[str, Tensor], tokens: Tensor) -> Tensor:
    """Logits at the last position of K models at once: ``P`` maps each parameter name of
    ``Transformer`` to a (K, *shape) stack, ``tokens`` is (K, B, T) (or (B, T), shared by all
    runs); returns (K, B, vocab). Same computation as ``Transformer.forward`` per run."""
    K = P["embedding.weight"].shape[0]
    if tokens.ndim == 2:
        tokens = tokens.expand(K, *tokens.shape)
    if tokens.ndim != 3 or tokens.shape[0] != K or tokens.shape[2] > cfg.seq_len:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)}: expected ({K}, B, T≤{cfg.seq_len})")
    E, pos = P["embedding.weight"], P["pos_embedding"]
    T = tokens.shape[2]
    x = _lookup(E, tokens) + pos[:, None, :T]
    first = 0
    if cfg.depth > 1:
        b0 = _Stacked(P, cfg, 0)
        h = _rmsnorm(E[:, :, None] + pos[:, None, :T], b0["norm1.g"]).reshape(K, -1, E.shape[-1])  # (K, V·T, d)
        row = tokens * T + torch.arange(T, device=tokens.device)
        x = x + b0.attend(*(_lookup(t, row) for t in b0.qkv(h)))
        x = x + b0.mlp(x)
        first = 1
    for l in range(first, cfg.depth - 1):
        x = _Stacked(P, cfg, l).full(x)
    x = _Stacked(P, cfg, cfg.depth - 1).last(x)
    return _linear(_rmsnorm(x, P["norm_final.g"]), P["lm_head.weight"])


def stack_models(cfg: ModelConfig, seeds: Sequence[int], device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """The parameters of ``build_model(cfg, seed)`` for each seed, stacked: {name: (K, *shape)}."""
    models = [build_model(cfg, s, device) for s in seeds]
    names = [n for n, _ in models[0].named_parameters()]
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names}


# --------------------------------------------------------------------------- decays
def _direction(decay: Decay | None) -> Callable[[Tensor], Tensor] | None:
    """f with ``decay.apply(W) = W − strength·f(W)``, for the decays that have that form."""
    c = decay.cfg if decay is not None else None
    table = {
        L2Decay: lambda W: W,
        NewtonSchulzDecay: lambda W: spectral.newton_schulz(W, c.ns_steps, c.ns_poly),
        PolarDecay: spectral.polar,
        TangentialNewtonSchulzDecay: lambda W: spectral.radial_tangential(
            spectral.newton_schulz(W, c.ns_steps, c.ns_poly), W)[1],
    }
    return table.get(type(decay))


# --------------------------------------------------------------------------- one run in the stack
@dataclass
class _Member:
    i: int                                   # index in the caller's list
    cfg: RunConfig
    sampler: BatchSampler
    train_ids: Tensor                        # rows of the all-pairs table in its train set
    is_train: Tensor                         # (N,) bool over all pairs
    n_train: int
    n_val: int
    ceiling: float | None
    hist: dict = field(default_factory=lambda: {k: [] for k in ("step", "train_loss", "train_acc", "val_loss", "val_acc")})
    spectra: dict = field(default_factory=dict)
    tangential: dict = field(default_factory=dict)
    tang_steps: list = field(default_factory=list)
    status: str = "ok"
    grok: int | None = None
    wall: float = 0.0


def _pair_rows(op: str, p: int, x: Tensor) -> Tensor:
    """Row of each token triple ``x`` (N×3) in ``all_pairs(op, p)``."""
    X, _ = all_pairs(op, p)
    lut = torch.full((p * p,), -1, dtype=torch.long)
    lut[X[:, 0] * p + X[:, 1]] = torch.arange(len(X))
    return lut[x[:, 0].cpu() * p + x[:, 1].cpu()]


def _append_one(store: dict, names: list[str], values: dict[str, Tensor]) -> None:
    """``lrdlib.train._append`` for one run's (n_targets, ...) slice."""
    for key, v in values.items():
        for n, row in zip(names, v.detach().cpu().tolist()):
            store[n].setdefault(key, []).append(row)


class _Group:
    """The stacked state of the runs still training: parameters, optimiser state, per-run
    vectors. ``keep(rows)`` drops finished runs from every stack."""

    def __init__(self, cfgs: list[RunConfig], device: torch.device):
        c0 = cfgs[0]
        self.cfg0, self.device = c0, device
        self.P = {n: t.clone().requires_grad_() for n, t in stack_models(c0.model, [c.seed for c in cfgs], device).items()}
        # as lrdlib.optim.split_targets: 2-D parameters whose name contains a target string
        self.targets = [n for n, t in self.P.items() if t.ndim == 3 and any(s in n for s in c0.targets)]
        if c0.targets and not self.targets:
            raise ValueError(f"targets={c0.targets!r} match no 2-D parameter of the model")
        self.rest = [n for n in self.P if n not in self.targets]
        o = c0.optim
        self.luon = o.kind == "luon"
        adam_names = self.rest if self.luon else list(self.P)
        wd = {n: [c.optim.weight_decay for c in cfgs] for n in self.rest}
        if not self.luon:
            wd.update({n: [c.optim.target_weight_decay for c in cfgs] for n in self.targets})
        # the factor fused AdamW multiplies a parameter by, computed as it does (double, then float)
        self.decay_factor = {n: torch.tensor([1 - o.lr * w for w in wd[n]], dtype=torch.float32, device=device)
                             for n in adam_names}
        self.decayed = {n: any(w != 0 for w in wd[n]) for n in adam_names}   # host-side: no device sync per step
        self.adam = torch.optim.AdamW([self.P[n] for n in adam_names], lr=o.lr, betas=o.betas, eps=o.eps,
                                      weight_decay=0.0, fused=True)
        self.adam_names = adam_names
        if self.luon:
            self.lam = torch.tensor([c.optim.luon_lambda for c in cfgs], dtype=torch.float32, device=device)
            self.momentum = {n: torch.zeros_like(self.P[n]) for n in self.targets}
        self.decays = [make_decay(c.decay) for c in cfgs]
        self.direction = _direction(self.decays[0])
        self.strength = torch.tensor([c.decay.strength for c in cfgs], dtype=torch.float32, device=device)

    @property
    def K(self) -> int:
        return self.P["embedding.weight"].shape[0]

    def target_stack(self, grad: bool = False) -> Tensor:
        """(K, n_targets, m, n) copy of the target matrices (or their gradients)."""
        return torch.stack([(self.P[n].grad if grad else self.P[n]).detach() for n in self.targets], 1).clone()

    @staticmethod
    def _bc(v: Tensor, like: Tensor) -> Tensor:
        return v.view(-1, *([1] * (like.ndim - 1)))

    @torch.no_grad()
    def optimizer_step(self) -> None:
        for n in self.adam_names:
            if self.decayed[n]:
                self.P[n].mul_(self._bc(self.decay_factor[n], self.P[n]))
        self.adam.step()
        if self.luon:
            o = self.cfg0.optim
            for n in self.targets:
                p = self.P[n]
                self.momentum[n].mul_(o.momentum).add_(p.grad).addcmul_(p, self._bc(self.lam, p))
            M = torch.stack([self.momentum[n] for n in self.targets], 1)          # (K, n_t, m, n)
            U = spectral.newton_schulz(M, o.ns_steps, o.ns_poly)
            for j, n in enumerate(self.targets):
                self.P[n].sub_(U[:, j], alpha=o.muon_lr)

    @torch.no_grad()
    def decay_step(self, step: int) -> None:
        d0 = self.decays[0]
        if d0 is None or not self.targets or not d0.active(step):
            return
        W = torch.stack([self.P[n].detach() for n in self.targets], 1)           # (K, n_t, m, n)
        if self.direction is not None:
            new = W - self._bc(self.strength, W) * self.direction(W)
        else:
            new = torch.stack([d.apply(W[k], step) for k, d in enumerate(self.decays)])
        for j, n in enumerate(self.targets):
            self.P[n].copy_(new[:, j])

    def zero_grad(self) -> None:
        for p in self.P.values():
            p.grad = None

    def state(self, k: int) -> dict[str, Tensor]:
        """Run k's weights as a ``Transformer`` state dict."""
        return {n: t[k].detach().clone() for n, t in self.P.items()}

    def keep(self, rows: list[int]) -> None:
        """Keep only the runs at ``rows`` of the stack (parameters, optimiser state, vectors)."""
        idx = torch.tensor(rows, device=self.device)
        old = dict(self.P)
        self.P = {n: t.detach()[idx].clone().requires_grad_() for n, t in old.items()}
        o = self.cfg0.optim
        adam = torch.optim.AdamW([self.P[n] for n in self.adam_names], lr=o.lr, betas=o.betas, eps=o.eps,
                                 weight_decay=0.0, fused=True)
        for n in self.adam_names:
            st = self.adam.state.get(old[n])
            if st:
                adam.state[self.P[n]] = {k: (v.clone() if v.ndim == 0 else v[idx].clone()) for k, v in st.items()}
        self.adam = adam
        self.decay_factor = {n: f[idx] for n, f in self.decay_factor.items()}
        self.decayed = {n: bool((f != 1).any()) for n, f in self.decay_factor.items()}
        if self.luon:
            self.lam = self.lam[idx]
            self.momentum = {n: m[idx].clone() for n, m in self.momentum.items()}
        self.decays = [self.decays[r] for r in rows]
        self.strength = self.strength[idx]


@torch.no_grad()
def _evaluate(cfg: ModelConfig, P: dict[str, Tensor], X: Tensor, Y: Tensor, is_train: Tensor) -> list[tuple[float, float, float, float]]:
    """(train loss, train acc, val loss, val acc) per run of the stack, over all pairs at once
    (the train/validation sets of every run partition the same table)."""
    K, N = is_train.shape
    rows = max(256, _EVAL_ROWS.get(X.device.type, 1 << 15) // K)
    sums = torch.zeros(K, 4, dtype=torch.float64, device=X.device)    # train loss, train correct, val loss, val correct
    for s in range(0, N, rows):
        logits = stacked_forward(cfg, P, X[s:s + rows])
        y = Y[s:s + rows]
        ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(K), reduction="none").view(K, -1).double()
        ok = (logits.argmax(-1) == y).double()
        tr = is_train[:, s:s + rows]
        zero = torch.zeros((), dtype=torch.float64, device=X.device)
        sums += torch.stack([torch.where(tr, ce, zero).sum(1), (ok * tr).sum(1),
                             torch.where(tr, zero, ce).sum(1), (ok * ~tr).sum(1)], 1)
    n_tr = is_train.sum(1).double()
    n_va = N - n_tr
    out = torch.stack([sums[:, 0] / n_tr, sums[:, 1] / n_tr, sums[:, 2] / n_va, sums[:, 3] / n_va], 1)
    return [tuple(r) for r in out.cpu().tolist()]


def _record(m: _Member, names: list[str], step: int, sv: list, device: torch.device) -> dict:
    """The record of one finished run, in ``lrdlib.train``'s format."""
    cfg, hist = m.cfg, m.hist
    record = {
        "key": cfg.key(),
        "config": cfg.to_dict(),
        "status": m.status,
        "steps_run": step,
        "steps_to_grok": m.grok,
        "grokked": m.grok is not None,
        "final_train_acc": hist["train_acc"][-1],
        "final_val_acc": hist["val_acc"][-1],
        "max_val_acc": max(hist["val_acc"]),
        "commutativity_ceiling": m.ceiling,
        "wall_time_s": m.wall,
        "ms_per_step": 1000 * m.wall / max(step, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "history": hist,
        "targets": names,
        "spectra": m.spectra,
        "tangential": {"step": m.tang_steps, **m.tangential},
        "final_singular_values": dict(zip(names, sv)),
    }
    return json.loads(json.dumps(record))  # as train(): equal to the record read back from the cache


def _run_group(cfgs: list[RunConfig], on_finish: Callable[[int, dict, dict], None],
               progress: bool, desc: str | None) -> None:
    """Train ``cfgs`` (one signature) as one stack; ``on_finish(i, record, state)`` for each run
    as it finishes."""
    c0 = cfgs[0]
    device = torch.device(c0.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={c0.device!r} requested but CUDA is not available here; use device='cpu'")
    X, Y = (t.to(device) for t in all_pairs(c0.task.op, c0.task.p))
    members: list[_Member] = []
    for i, c in enumerate(cfgs):
        split = make_split(c.task, device)
        ids = _pair_rows(c.task.op, c.task.p, split.x_train).to(device)
        is_train = torch.zeros(len(Y), dtype=torch.bool, device=device)
        is_train[ids] = True
        members.append(_Member(
            i=i, cfg=c, sampler=BatchSampler(len(ids), c.batch_size, c.seed, device), train_ids=ids,
            is_train=is_train, n_train=len(ids), n_val=len(Y) - len(ids),
            ceiling=commutativity_ceiling(split) if c.task.op in ("add", "mul") else None))
    G = _Group(cfgs, device)
    names = G.targets
    for m in members:
        m.spectra = {n: {} for n in names}
        m.tangential = {n: {} for n in names}

    def log_eval(active: list[_Member], rows: list[int], step: int) -> list[bool]:
        """Evaluate the runs at ``rows`` of the stack; True for each that must stop."""
        P = G.P if len(rows) == G.K else {n: t[rows] for n, t in G.P.items()}
        res = _evaluate(c0.model, P, X, Y, torch.stack([m.is_train for m in active]))
        W = torch.stack([P[n].detach() for n in names], 1)                      # (k, n_t, m, n)
        finite = [math.isfinite(tl) and math.isfinite(vl) and ok
                  for (tl, _, vl, _), ok in zip(res, torch.isfinite(W).flatten(1).all(1).tolist())]
        fin = [j for j, f in enumerate(finite) if f]
        spec = _spectra(W[fin]) if fin else {}
        stops = []
        for j, (m, (tl, ta, vl, va)) in enumerate(zip(active, res)):
            for k, v in zip(("step", "train_loss", "train_acc", "val_loss", "val_acc"), (step, tl, ta, vl, va)):
                m.hist[k].append(v)
            if not finite[j]:  # as train(): NaN placeholders for a diverged run's spectra
                _append_one(m.spectra, names, _nan_spectra(W[j]))
                m.status = "diverged"
                stops.append(True)
                continue
            _append_one(m.spectra, names, {k: v[fin.index(j)] for k, v in spec.items()})
            m.grok = steps_to_grok(m.hist["step"], m.hist["val_acc"], m.cfg.grok_threshold)
            stops.append(m.cfg.early_stop and m.grok is not None)
        return stops

    def finish(done: list[int], step: int) -> None:
        """Write out the runs at stack rows ``done`` and drop them from the stack."""
        nonlocal active
        if not done:
            return
        W = torch.stack([G.P[n].detach()[done] for n in names], 1).float()
        for j, r in enumerate(done):
            m = active[r]
            sv = (spectral.singular_values(W[j]) if torch.isfinite(W[j]).all() else _nan_spectra(W[j])["top_sv"]).cpu().tolist()
            on_finish(m.i, _record(m, names, step, sv, device), G.state(r))
        rows = [r for r in range(len(active)) if r not in done]
        active = [active[r] for r in rows]
        if active:
            G.keep(rows)

    active = list(members)
    steps_max = max(c.steps for c in cfgs)
    pbar = tqdm(total=steps_max, disable=not progress, desc=desc or f"batched ×{len(cfgs)}", mininterval=0.5, leave=False)
    t0 = time.perf_counter()
    stops = log_eval(active, list(range(len(active))), 0)
    dt = time.perf_counter() - t0
    for m in active:
        m.wall += dt / len(active)
    finish([r for r, s in enumerate(stops) if s], 0)
    step = 0
    while active:
        t0 = time.perf_counter()
        step += 1
        idx = [m.sampler.next() for m in active]
        lens = [len(i) for i in idx]
        ids = [m.train_ids[i] for m, i in zip(active, idx)]
        if len(set(lens)) == 1:
            rows_ids, mask = torch.stack(ids), None
        else:
            rows_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
            mask = torch.arange(rows_ids.shape[1], device=device)[None] < torch.tensor(lens, device=device)[:, None]
        measure = [step % m.cfg.eval_every == 0 or step == m.cfg.steps for m in active]
        logits = stacked_forward(c0.model, G.P, X[rows_ids])
        y = Y[rows_ids]
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        if mask is None:
            loss = ce.mean(1)
        else:
            loss = (ce * mask).sum(1) / torch.tensor(lens, device=device, dtype=ce.dtype)
        G.zero_grad()
        loss.sum().backward()
        probe = None
        if any(measure):
            probe = _Probe(W0=G.target_stack(), G=G.target_stack(grad=True))
        G.optimizer_step()
        if probe is not None:
            probe.W1 = G.target_stack()
        G.decay_step(step)
        pbar.update(1)
        done: list[int] = []
        if probe is not None:
            probe.W2 = G.target_stack()
            tang = _tangential(probe)
            rows = [r for r, f in enumerate(measure) if f]
            for r in rows:
                active[r].tang_steps.append(step)
                _append_one(active[r].tangential, names, {k: v[r] for k, v in tang.items()})
            sub = [active[r] for r in rows]
            stops = log_eval(sub, rows, step)
            losses = loss.detach()[rows].cpu().tolist()
            for r, m, stop, l in zip(rows, sub, stops, losses):
                if not math.isfinite(l):
                    m.status, stop = "diverged", True
                if stop or step >= m.cfg.steps:
                    done.append(r)
            pbar.set_postfix(active=len(active) - len(done), refresh=False)
        dt = time.perf_counter() - t0
        for m in active:
            m.wall += dt / len(active)
        finish(done, step)
    pbar.close()


def train_batched(configs: Sequence[RunConfig], *, cache: RunCache | None = None, use_cache: bool = True,
                  progress: bool | None = None, desc: str | None = None) -> list[dict]:
    """Train compatible ``configs`` (``compatible_groups`` puts them in one group) as one
    stacked model; return their records (``lrdlib.train.train``'s format), in order.

    Runs already in the cache are loaded, not retrained; each trained run is saved (record
    and weights) as soon as it finishes, so an interrupted group keeps what it finished.
    """
    configs = list(configs)
    if not configs:
        return []
    sigs = {signature(c) for c in configs}
    if None in sigs or len(sigs) > 1:
        raise ValueError("train_batched needs configs of one compatible group (see compatible_groups); "
                         f"got {len(sigs)} signatures" + (" including an unbatchable one (optim.kind='muon' or compile=True)" if None in sigs else ""))
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    cache = cache if cache is not None else RunCache()
    out: list[dict | None] = [cache.load(c) if use_cache else None for c in configs]
    todo: dict[str, list[int]] = {}          # unique keys still to train -> positions
    for i, c in enumerate(configs):
        if out[i] is None:
            todo.setdefault(c.key(), []).append(i)
    firsts = [pos[0] for pos in todo.values()]

    def on_finish(j: int, rec: dict, state: dict) -> None:
        cfg = configs[firsts[j]]
        if use_cache:
            cache.save(cfg, rec, state)
        for i in todo[cfg.key()]:
            out[i] = rec

    if firsts:
        _run_group([configs[i] for i in firsts], on_finish, progress, desc)
    return out  # type: ignore[return-value]
