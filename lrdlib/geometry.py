"""Scale invariance and the radial/tangential geometry of the seed model (notebooks 01, 02).

* ``scale_invariance_table(model, x, y)``: per parameter P, the relative change of the
  logits when P alone is scaled by α (default α ∈ {0.1, 10}), the cosine between ∇_P L and P
  on the batch, and why P is or is not scale-invariant. Computed in float64 on a copy.
* ``euler_checks(model, name, x, y)``: the consequences of L(αW) = L(W) for one matrix:
  ⟨∇L, W⟩ = 0, ∇L(αW) = ∇L(W)/α, ‖W − ηg‖² = ‖W‖² + η²‖g‖², and the step on W/‖W‖
  shrinking as η/‖W‖².
* ``snapshot_run(cfg, every)``: re-runs the training loop of ``lrdlib.train`` (same pieces,
  same batches, so the same trajectory as ``train(cfg)``) and keeps the target matrices and
  their task gradients every ``every`` steps; cached next to the run cache.
* ``trajectory_split(snap, ...)``: radial and tangential norms, at each snapshot, of the task
  gradient, of the L2 direction W, of the LRD direction NS(W) and of the exact U Vᵀ.
* ``subgradient_slack``: min over test points of ‖W'‖_* − ‖W‖_* − ⟨G, W' − W⟩ (≥ 0 iff G
  passes the subgradient inequality there), used to draw the needle-to-fan picture.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from . import spectral
from .config import RunConfig
from .data import make_split
from .decay import make_decay
from .model import Transformer, build_model
from .optim import build_optimizers, split_targets
from .paths import cache_dir

# why each parameter of the seed model is (or is not) scale-invariant; first match wins
_REASONS = (
    ("q_norm.g", "scales the normalised q: the attention temperature"),
    ("k_norm.g", "scales the normalised k: the attention temperature"),
    ("q_proj", "INVARIANT: QK-Norm divides out any scale of q = W_Q h"),
    ("k_proj", "INVARIANT: QK-Norm divides out any scale of k = W_K h"),
    ("v_proj", "scales v, hence the attention output added to the residual stream"),
    ("o_proj", "scales the attention output added to the residual stream"),
    ("fc_in", "SiLU is not homogeneous: silu(αz) ≠ α·silu(z)"),
    ("fc_out", "scales the MLP output added to the residual stream"),
    ("norm1.g", "scales the attention input: v and the residual contribution scale (q, k are renormalised)"),
    ("norm2.g", "scales the MLP input (SiLU is not homogeneous)"),
    ("norm_final.g", "scales the logits: the softmax temperature of the loss"),
    ("lm_head", "scales the logits: the softmax temperature of the loss"),
    ("pos_embedding", "changes the balance of positional and token embeddings"),
    ("embedding", "changes the balance of token and positional embeddings, and of later residual additions"),
)
_NO_QK_NORM = "without QK-Norm, scaling W_{} scales the attention logits q·kᵀ (softmax temperature)"


def why(name: str, qk_norm: bool = True) -> str:
    """One line: why parameter ``name`` of the seed model is (not) scale-invariant."""
    for key, reason in _REASONS:
        if key in name:
            if key in ("q_proj", "k_proj") and not qk_norm:
                return _NO_QK_NORM.format(key[0].upper())
            return reason
    return "not analysed"


def _loss(model: Transformer, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def scale_invariance_table(model: Transformer, x: Tensor, y: Tensor, alphas: tuple[float, ...] = (0.1, 10.0),
                           dtype: torch.dtype = torch.float64, tol: float = 1e-12) -> pd.DataFrame:
    """One row per parameter P (in ``named_parameters`` order):

    expected   P ∈ model.scale_invariant_parameters() (QK-Norm on: W_Q, W_K)
    Δf(α)      ‖f(P → αP) − f‖_F / ‖f‖_F on the logits of the batch (x, y), one column per α
    cos(∇L,W)  ⟨∇_P L, P⟩ / (‖∇_P L‖ ‖P‖), L the mean cross-entropy on the batch
    grad_norm  ‖∇_P L‖
    invariant  measured: every Δf(α) < tol and |cos| < tol
    why        the reason (``why``)

    The model is copied and cast to ``dtype`` (default float64, so exact invariance shows as
    ~1e-15, not float32 rounding); the caller's model is untouched.
    """
    m = copy.deepcopy(model).to(dtype=dtype, device="cpu").eval()
    x, y = x.cpu(), y.cpu()
    expected = set(m.scale_invariant_parameters())
    with torch.no_grad():
        base = m(x)
    m.zero_grad(set_to_none=True)
    _loss(m, x, y).backward()
    rows = []
    for name, p in m.named_parameters():
        row = {"parameter": name, "shape": "×".join(map(str, p.shape)), "expected": name in expected}
        orig = p.detach().clone()
        with torch.no_grad():
            for a in alphas:
                p.mul_(a)
                row[f"Δf(α={a:g})"] = float((m(x) - base).norm() / base.norm())
                p.copy_(orig)
        g = p.grad
        row["cos(∇L,W)"] = float((g * orig).sum() / (g.norm() * orig.norm()).clamp_min(1e-300))
        row["grad_norm"] = float(g.norm())
        row["invariant"] = max(row[f"Δf(α={a:g})"] for a in alphas) < tol and abs(row["cos(∇L,W)"]) < tol
        row["why"] = why(name, m.cfg.qk_norm)
        rows.append(row)
    return pd.DataFrame(rows).set_index("parameter")


def invariance_summary(tab: pd.DataFrame) -> dict:
    """The numbers a notebook states about a ``scale_invariance_table``: how many parameters
    are invariant (measured and expected), whether the two sets agree, the largest Δf and
    |cos| among the invariant ones and the smallest Δf among the others."""
    dcols = [c for c in tab.columns if c.startswith("Δf")]
    dmax = tab[dcols].max(axis=1)
    inv, rest = tab[tab.invariant], tab[~tab.invariant]
    return {
        "n_parameters": len(tab),
        "n_invariant": int(tab.invariant.sum()),
        "invariant": list(inv.index),
        "agrees_with_expected": bool((tab.invariant == tab.expected).all()),
        "max_df_invariant": float(dmax[tab.invariant].max()) if len(inv) else float("nan"),
        "max_abs_cos_invariant": float(inv["cos(∇L,W)"].abs().max()) if len(inv) else float("nan"),
        "min_df_others": float(dmax[~tab.invariant].min()) if len(rest) else float("nan"),
        "median_abs_cos_others": float(rest["cos(∇L,W)"].abs().median()) if len(rest) else float("nan"),
    }


def _grad_of(model: Transformer, name: str, x: Tensor, y: Tensor) -> Tensor:
    p = dict(model.named_parameters())[name]
    model.zero_grad(set_to_none=True)
    _loss(model, x, y).backward()
    return p.grad.detach().clone()


def euler_checks(model: Transformer, name: str, x: Tensor, y: Tensor, eta: float = 1e-4,
                 alphas: tuple[float, ...] = (0.5, 2.0, 4.0), growth_eta: float = 1.0) -> dict[str, float]:
    """The consequences of L(αW) = L(W) for parameter ``name`` (float64, on a copy):

    cos_grad_w        ⟨g, W⟩/(‖g‖‖W‖)                                 (Euler: 0)
    growth_mismatch   |‖W − ηg‖² − ‖W‖² − η²‖g‖²| / (η²‖g‖²) at η = growth_eta
                      (0: any gradient step grows ‖W‖² by exactly η²‖g‖²; an exact identity,
                      so a large η keeps float64 cancellation in ‖W‖² small against η²‖g‖²)
    grad_homogeneity  max_α ‖α ∇L(αW) − ∇L(W)‖ / ‖∇L(W)‖                (0: ∇L(αW) = ∇L(W)/α)
    step_scaling      max_α |α² · δ(α)/δ(1) − 1|, δ(α) = ‖dir(αW − ηg_α) − dir(αW)‖, dir(X) = X/‖X‖
                      (0 to first order in η: the step on W/‖W‖ scales as η/‖W‖²)
    eta, norm_w       the η of the step-scaling check and ‖W‖_F.
    """
    m = copy.deepcopy(model).to(dtype=torch.float64, device="cpu")
    x, y = x.cpu(), y.cpu()
    p = dict(m.named_parameters())[name]
    W = p.detach().clone()
    g = _grad_of(m, name, x, y)
    cos = float((g * W).sum() / (g.norm() * W.norm()))
    e2g2 = growth_eta ** 2 * g.norm() ** 2
    mismatch = float(((W - growth_eta * g).norm() ** 2 - W.norm() ** 2 - e2g2).abs() / e2g2)

    def unit(X):
        return X / X.norm()

    d1 = float((unit(W - eta * g) - unit(W)).norm())
    homog, scaling = 0.0, 0.0
    with torch.no_grad():
        for a in alphas:
            p.copy_(a * W)
            with torch.enable_grad():
                ga = _grad_of(m, name, x, y)
            homog = max(homog, float((a * ga - g).norm() / g.norm()))
            da = float((unit(a * W - eta * ga) - unit(a * W)).norm())
            scaling = max(scaling, abs(a ** 2 * da / d1 - 1))
        p.copy_(W)
    return {"cos_grad_w": cos, "growth_mismatch": mismatch, "grad_homogeneity": homog,
            "step_scaling": scaling, "eta": eta, "norm_w": float(W.norm())}


# ----------------------------------------------------------------------------- trajectories
def _snapshot_path(cfg: RunConfig, every: int) -> Path:
    return cache_dir() / f"{cfg.key()}.snapshots-{every}.pt"


def snapshot_run(cfg: RunConfig, every: int, use_cache: bool = True) -> dict:
    """The training trajectory of ``cfg`` (the loop of ``lrdlib.train``, the same pieces and
    batches, hence the same trajectory as ``train(cfg)`` on the same device), keeping the
    target matrices every ``every`` steps.

    Returns {"names", "steps": [s, ...], "W": (S, K, m, n) float32 (the targets *before*
    step s, i.e. after s − 1 steps), "G": (S, K, m, n) the task gradient of step s's minibatch
    at those weights, "W_final": (K, m, n) the targets after the last step}.
    Cached in the run cache folder as ``<key>.snapshots-<every>.pt``.
    """
    from .train import BatchSampler, _Probe, train_step  # late: train imports this package's modules

    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")
    path = _snapshot_path(cfg, every)
    if use_cache and path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # unreadable (not written by us): recompute
            pass
    device = torch.device(cfg.device)
    split = make_split(cfg.task, device)
    model = build_model(cfg.model, cfg.seed, device)
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    decay = make_decay(cfg.decay)
    tgt = split_targets(model, cfg.targets)[0]
    names, params = [n for n, _ in tgt], [p for _, p in tgt]
    sampler = BatchSampler(len(split.y_train), cfg.batch_size, cfg.seed, device)
    steps, Ws, Gs = [], [], []
    for step in range(1, cfg.steps + 1):
        idx = sampler.next()
        probe = _Probe() if step % every == 0 else None
        train_step(model, opts, decay, params, split.x_train[idx], split.y_train[idx], step, probe)
        if probe is not None:
            steps.append(step)
            Ws.append(probe.W0.float().cpu())
            Gs.append(probe.G.float().cpu())
    out = {"names": names, "steps": steps,
           "W": torch.stack(Ws) if Ws else torch.empty(0), "G": torch.stack(Gs) if Gs else torch.empty(0),
           "W_final": torch.stack([p.detach().float().cpu() for p in params])}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(out, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def snapshot_record_mismatch(snap: dict, record: dict) -> tuple[float, int]:
    """(largest relative difference, number of comparisons) between the task gradient's
    radial and tangential norms computed from ``snap`` and those in a ``train`` record of the
    same run, at the steps both have: a check that the snapshots lie on the recorded trajectory."""
    tang = record["tangential"]
    pos = {s: j for j, s in enumerate(tang["step"])}
    worst, n = 0.0, 0
    for i, s in enumerate(snap["steps"]):
        if s not in pos:
            continue
        r, t = spectral.radial_tangential_norms(snap["G"][i].double(), snap["W"][i].double())
        for k, name in enumerate(snap["names"]):
            ref_t = tang[name]["grad_tan"][pos[s]]
            ref_r = tang[name]["grad_rad"][pos[s]]
            worst = max(worst, abs(float(t[k]) - ref_t) / abs(ref_t), abs(float(r[k]) - ref_r) / abs(ref_t))
            n += 1
    return worst, n


def trajectory_split(snap: dict, ns_steps: int = 5, ns_poly: str = "cubic") -> pd.DataFrame:
    """Tidy frame: step, matrix, direction, radial (signed ⟨D, W⟩/‖W‖_F), tangential ‖T‖_F,
    norm ‖D‖_F and tan_share ‖T‖_F/‖D‖_F for the directions, at each snapshot W:

        task gradient   G (the minibatch gradient at W)
        L2              W            (the direction of weight decay; L2's step is λ·lr·W)
        LRD (NS)        NS(W)        (seed: 5 cubic steps; LRD's step is α·NS(W))
        exact U Vᵀ      polar(W)

    computed in float64. The directions are unit-free; multiply by the step sizes for the
    per-step displacement.
    """
    rows = []
    W = snap["W"].double()
    G = snap["G"].double()
    dirs = {"task gradient": G, "L2 (W)": W, "LRD (NS(W))": spectral.newton_schulz(W, ns_steps, ns_poly),
            "exact U Vᵀ": spectral.polar(W)}
    for label, D in dirs.items():
        r, t = spectral.radial_tangential_norms(D, W)
        n = spectral.fro(D)
        for i, s in enumerate(snap["steps"]):
            for k, name in enumerate(snap["names"]):
                rows.append({"step": s, "matrix": name, "direction": label, "radial": float(r[i, k]),
                             "tangential": float(t[i, k]), "norm": float(n[i, k]),
                             "tan_share": float(t[i, k] / n[i, k])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- subdifferential
def subgradient_slack(W: Tensor, G: Tensor, n_points: int = 2000, scale: float = 1.0, seed: int = 0,
                      extra: Tensor | None = None) -> float:
    """min over test points W' of ‖W'‖_* − ‖W‖_* − ⟨G, W' − W⟩ (float64).

    G is a subgradient of ‖·‖_* at W iff this is ≥ 0 for every W'; a negative value is a
    witness that G is not. The test points are W + scale·r·H (H Gaussian, r log-spaced in
    [1e-3, 1], to probe directions near W), pure random matrices scale·H, and the matrices in
    ``extra`` (shape (k, m, n)), e.g. a known witness direction.
    """
    gen = torch.Generator().manual_seed(seed)
    W, G = W.double(), G.double()
    H = torch.randn(n_points, *W.shape, generator=gen, dtype=torch.float64)
    r = torch.logspace(-3, 0, n_points, dtype=torch.float64)[:, None, None]
    Wp = torch.cat([W + scale * r * H, scale * H] + ([extra.double().reshape(-1, *W.shape)] if extra is not None else []))
    slack = spectral.nuclear_norm(Wp) - spectral.nuclear_norm(W) - spectral.inner(G.expand_as(Wp), Wp - W)
    return float(slack.min())


def diag_trajectory(decay_apply, start: tuple[float, float], steps: int) -> Tensor:
    """Iterate W ← decay_apply(W) from W = diag(start) (a 2×2 float64 matrix); returns the
    diagonal entries (steps + 1, 2). The maps used in notebook 02 keep a diagonal W diagonal
    (their directions are functions of the singular value decomposition)."""
    W = torch.diag(torch.tensor(start, dtype=torch.float64))[None]
    out = [W[0].diagonal().clone()]
    for s in range(1, steps + 1):
        W = decay_apply(W, s)
        out.append(W[0].diagonal().clone())
    return torch.stack(out)


def riemannian_fd_check(W: Tensor, n_dirs: int = 8, t: float = 1e-5, seed: int = 0) -> dict[str, float]:
    """Finite-difference check that the tangential part T of U Vᵀ at W, divided by ‖W‖_F, is
    the Riemannian gradient on the sphere {‖X‖_F = ‖W‖_F} of r = ‖W‖_*/‖W‖_F (float64).

    For ``n_dirs`` random unit tangent directions H (⟨H, W⟩ = 0) the derivative of r along the
    sphere curve γ(s) = ‖W‖_F·(W + sH)/‖W + sH‖_F is taken by central differences with step
    min(t, σ_min/10) (r is smooth only on a neighbourhood of size ~σ_min) and compared with
    ⟨T/‖W‖_F, H⟩. Returns the largest |fd − analytic| / ‖T/‖W‖_F‖ (the relative error,
    ~step² + rounding/step), the largest |⟨T, W⟩|/(‖T‖‖W‖), the step used, and the rounding
    floor of the difference quotient, ε·n/(step·‖T/‖W‖_F‖) (ε = float64 machine epsilon,
    n = min(shape): r is computed from n singular values, each exact to about ε·σ₁ ≤ ε‖W‖_F),
    which dominates when σ_min forces a tiny step.
    """
    W = W.double()
    rho = spectral.fro(W)
    t = min(t, float(spectral.singular_values(W)[-1]) / 10)
    _, T = spectral.radial_tangential(spectral.polar(W), W)
    grad = T / rho
    gen = torch.Generator().manual_seed(seed)
    err = 0.0
    for _ in range(n_dirs):
        H = torch.randn(W.shape, generator=gen, dtype=torch.float64)
        H = spectral.sphere_gradient(W, H)
        H = H / spectral.fro(H)

        def on_sphere(s):
            X = W + s * H
            return rho * X / spectral.fro(X)

        fd = (spectral.nuc_fro_ratio(on_sphere(t)) - spectral.nuc_fro_ratio(on_sphere(-t))) / (2 * t)
        err = max(err, float((fd - spectral.inner(grad, H)).abs() / spectral.fro(grad)))
    ortho = float(spectral.inner(T, W).abs() / (spectral.fro(T) * rho))
    floor = torch.finfo(torch.float64).eps * min(W.shape) / (t * float(spectral.fro(grad)))
    return {"fd_rel_err": err, "tangent_cos": ortho, "step": t, "rounding_floor": floor}
