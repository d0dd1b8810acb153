"""The theory helpers of notebooks 01 and 02: polar geometry and subgradients
(lrdlib.polar_geometry), the NS spectral response (lrdlib.newton_schulz), scale invariance
(lrdlib.scale_invariance), trajectories (lrdlib.trajectory), and the NS-vs-SVD benchmark script.
Small sizes, float64 where identities are tested."""
import importlib.util
import itertools
import math
from pathlib import Path

import pytest
import torch

from lrdlib.analysis.scale_invariance import (
    euler_checks,
    invariance_summary,
    scale_invariance_table,
    why,
)
from lrdlib.core import newton_schulz as ns
from lrdlib.core import polar_geometry as pg
from lrdlib.core import spectral as sp
from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig, make_split
from lrdlib.core.decay import DecayConfig, make_decay
from lrdlib.core.model import ModelConfig, build_model
from lrdlib.core.optim import OptimConfig
from lrdlib.core.polar_geometry import (
    diag_trajectory,
    riemannian_fd_check,
    subgradient_slack,
)
from lrdlib.runs.cache import RunCache, train, trained_model
from lrdlib.runs.trajectory import snapshot_record_mismatch, snapshot_run, trajectory_split

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
SMALL = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                  model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                  optim=OptimConfig(weight_decay=0.1, target_weight_decay=0.0),
                  decay=DecayConfig("lrd_ns", 0.01), steps=12, eval_every=4, batch_size=64)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _with_spectrum(n, s, seed=0):
    q1, _ = torch.linalg.qr(_randn(n, n, seed=seed))
    q2, _ = torch.linalg.qr(_randn(n, n, seed=seed + 1))
    s = torch.as_tensor(s, dtype=D64)
    return (q1[:, :len(s)] * s) @ q2[:, :len(s)].T


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------------ polar geometry
@pytest.mark.parametrize("shape,rank", [((12, 12), 12), ((9, 15), 9), ((15, 9), 9), ((12, 12), 3)])
def test_polar_inner_product_is_nuclear_norm_and_split_closed_form(shape, rank):
    m, n = shape
    W = _randn(m, rank, seed=1) @ _randn(rank, n, seed=2)
    assert int(sp.numerical_rank(W)) == rank
    P = pg.polar_compact(W)
    torch.testing.assert_close(sp.inner(P, W), sp.nuclear_norm(W), rtol=1e-12, atol=0)
    torch.testing.assert_close(sp.inner(sp.polar(W), W), sp.nuclear_norm(W), rtol=1e-12, atol=0)  # any fan element
    c, T = pg.radial_tangential(P, W)
    c_cf, tan2 = pg.polar_split_closed_form(W)
    torch.testing.assert_close(c, c_cf, rtol=1e-12, atol=0)
    torch.testing.assert_close(sp.fro(T) ** 2, tan2, rtol=0, atol=1e-10)
    torch.testing.assert_close(tan2, rank - sp.nuclear_norm(W) ** 2 / sp.fro(W) ** 2, rtol=1e-12, atol=1e-12)
    assert abs(float(sp.inner(T, W))) < 1e-12 * float(sp.fro(T) * sp.fro(W))
    assert float(sp.fro(P) ** 2) == pytest.approx(rank, abs=1e-10)


def test_tangential_part_vanishes_exactly_for_flat_spectrum():
    W = _with_spectrum(8, [2.0] * 5)
    c, tan2 = pg.polar_split_closed_form(W)
    assert abs(float(tan2)) < 1e-12 and float(c) == pytest.approx(0.5)


def test_polar_compact_drops_null_space_but_polar_does_not():
    W = _with_spectrum(6, [3.0, 1.0])
    assert float(sp.fro(pg.polar_compact(W)) ** 2) == pytest.approx(2.0, abs=1e-10)
    assert float(sp.fro(sp.polar(W)) ** 2) == pytest.approx(6.0, abs=1e-10)


def test_nuc_fro_ratio_gradient_matches_finite_differences_and_is_tangent():
    W = _randn(10, 7, seed=3)
    g = pg.nuc_fro_ratio_grad(W)
    H = _randn(10, 7, seed=4)
    t = 1e-6
    fd = (pg.nuc_fro_ratio(W + t * H) - pg.nuc_fro_ratio(W - t * H)) / (2 * t)
    assert float(fd) == pytest.approx(float(sp.inner(g, H)), rel=1e-7)
    assert abs(float(sp.inner(g, W))) < 1e-13
    torch.testing.assert_close(pg.sphere_gradient(W, g), g, rtol=0, atol=1e-14)
    c, _ = pg.polar_split_closed_form(W)
    torch.testing.assert_close(c * W + sp.fro(W) * g, sp.polar(W), rtol=0, atol=1e-12)
    res = riemannian_fd_check(W, n_dirs=4)
    assert res["fd_rel_err"] < 1e-7 and res["tangent_cos"] < 1e-13
    assert 0 < res["rounding_floor"] < 1e-8


def test_riemannian_fd_check_near_rank_deficiency_is_rounding_limited():
    """σ_min/σ₁ = 1e-8 forces a step ~1e-9: the difference quotient loses digits, and the error
    stays below the reported rounding floor (the notebook's tolerance)."""
    U, _ = torch.linalg.qr(_randn(12, 12, seed=7))
    V, _ = torch.linalg.qr(_randn(12, 12, seed=8))
    S = torch.logspace(0, -8, 12, dtype=torch.float64)
    res = riemannian_fd_check(U @ torch.diag(S) @ V.T, n_dirs=4)
    assert res["step"] == pytest.approx(1e-9)
    assert res["rounding_floor"] > 1e-8
    assert res["fd_rel_err"] < res["rounding_floor"]


def test_sphere_gradient_projects_out_the_radial_part():
    W, E = _randn(5, 6, seed=5), _randn(5, 6, seed=6)
    R = pg.sphere_gradient(W, E)
    assert abs(float(sp.inner(R, W))) < 1e-12
    torch.testing.assert_close(pg.sphere_gradient(W, R), R, rtol=0, atol=1e-13)


# --------------------------------------------------------------- NS spectral response
@pytest.mark.parametrize("variant,steps", [("cubic", 1), ("cubic", 5), ("quintic", 5), ("polar_express", 5), ("sign", 0)])
def test_matrix_map_is_ns_response_on_normalised_singular_values(variant, steps):
    s = torch.tensor([1.0, 0.7, 0.3, 0.1, 0.05, 0.02, 0.01, 0.004], dtype=D64)  # full rank, ‖W‖_F ~ 1
    W = _with_spectrum(8, s, seed=7)
    S = sp.singular_values(W)
    M = sp.polar(W) if variant == "sign" else ns.newton_schulz(W, steps, variant)
    want = ns.ns_response(S / sp.fro(W), variant, steps).abs().sort(descending=True).values
    torch.testing.assert_close(sp.singular_values(M)[:len(s)], want, rtol=1e-6, atol=1e-7)  # ε: ~1e-8
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    phi = ns.ns_response(S / sp.fro(W), variant, steps)
    torch.testing.assert_close(M, (U * phi) @ Vh, rtol=0, atol=1e-7)


def test_polar_express_coefficients_shrink_the_error_every_step_and_beat_muon():
    coeffs = ns.polar_express_coefficients(5, lower=1e-3)
    assert len(coeffs) == 5
    # published first step for [1e-3, 1] (Amsel et al. 2025, before their 1.01 safety factor): a ≈ 8.3, b ≈ −24, c ≈ 17
    a, b, c = coeffs[0]
    assert 7.5 < a < 9.5 and -27 < b < -21 and 15 < c < 21
    x = torch.logspace(-3, 0, 2000, dtype=D64)
    errs = [float((ns.ns_response(x, "polar_express", k) - 1).abs().max()) for k in range(1, 6)]
    assert all(e2 < e1 for e1, e2 in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.15
    assert errs[-1] < float((ns.ns_response(x, "quintic", 5) - 1).abs().max())
    assert ns.polar_express_coefficients(5, lower=1e-3) == coeffs  # memoised, returned as a fresh list
    with pytest.raises(ValueError):
        ns.polar_express_coefficients(3, lower=0.0)


def test_ns_gain_knee_and_relative_error():
    for variant, steps in (("cubic", 5), ("quintic", 5), ("polar_express", 5)):
        g = ns.ns_gain_at_zero(variant, steps)
        s = torch.tensor([1e-9], dtype=D64)
        assert float(ns.ns_response(s, variant, steps) / s) == pytest.approx(g, rel=1e-6)
        k = ns.ns_knee(variant, steps)
        assert float(ns.ns_response(torch.tensor(k, dtype=D64), variant, steps)) == pytest.approx(0.5, abs=1e-9)
    assert ns.ns_gain_at_zero("cubic", 5) == 1.5 ** 5 and ns.ns_gain_at_zero("sign") == math.inf
    W = _randn(3, 16, 16, seed=8)
    assert float(ns.ns_relative_error(W, "sign").max()) < 1e-12
    e5, e10 = ns.ns_relative_error(W, "cubic", 5), ns.ns_relative_error(W, "cubic", 10)
    assert (e10 < e5).all() and (e5 > 0.1).all()


def test_ns_spectral_penalty_is_the_antiderivative():
    from scipy.integrate import quad

    s = torch.tensor([1e-6, 1e-4, 0.01, 0.05, 0.2, 0.6, 1.0], dtype=D64)
    for variant, steps in (("cubic", 5), ("quintic", 5), ("polar_express", 5)):
        phi = lambda t, v=variant, k=steps: float(ns.ns_response(torch.tensor(t, dtype=D64), v, k))
        ref = torch.tensor([quad(phi, 0, float(v), limit=200, epsabs=0, epsrel=1e-10)[0] for v in s], dtype=D64)
        torch.testing.assert_close(ns.ns_spectral_penalty(s, variant, steps), ref, rtol=1e-3, atol=0)
    small = torch.tensor([1e-5], dtype=D64)
    assert float(ns.ns_spectral_penalty(small, "cubic", 5)) == pytest.approx(1.5 ** 5 * 1e-10 / 2, rel=1e-3)
    torch.testing.assert_close(ns.ns_spectral_penalty(s, "sign"), s)


# ------------------------------------------------------------------ scale invariance
@pytest.fixture(scope="module")
def small_batch():
    split = make_split(SMALL.task, "cpu")
    return split.x_train[:128], split.y_train[:128]


@pytest.mark.parametrize("qk_norm", [True, False])
def test_scale_invariance_table_finds_exactly_qk_under_qk_norm(small_batch, qk_norm):
    model = build_model(ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64, qk_norm=qk_norm), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tab = scale_invariance_table(model, *small_batch)
    s = invariance_summary(tab)
    assert s["agrees_with_expected"]
    if qk_norm:
        assert sorted(s["invariant"]) == sorted(model.qk_weights())
        assert s["max_df_invariant"] < 1e-13 and s["max_abs_cos_invariant"] < 1e-13 and s["min_df_others"] > 1e-4
        assert tab.loc["layers.0.attn.q_proj.weight", "why"].startswith("INVARIANT")
    else:
        assert s["n_invariant"] == 0
        assert "without QK-Norm" in tab.loc["layers.0.attn.q_proj.weight", "why"]
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters()), "the caller's model was modified"
    assert next(model.parameters()).dtype == torch.float32
    assert why("layers.1.mlp.fc_in.weight").startswith("SiLU")


def test_euler_checks_hold_for_qk_and_fail_for_v(small_batch):
    model = build_model(SMALL.model, seed=0)
    q = euler_checks(model, "layers.0.attn.q_proj.weight", *small_batch)
    v = euler_checks(model, "layers.0.attn.v_proj.weight", *small_batch)
    assert abs(q["cos_grad_w"]) < 1e-13 and q["growth_mismatch"] < 1e-8
    assert q["grad_homogeneity"] < 1e-10 and q["step_scaling"] < 1e-7
    assert v["growth_mismatch"] > 1e-3 and v["grad_homogeneity"] > 1e-3


# ------------------------------------------------------------------------ trajectories
def test_snapshot_run_follows_the_trained_trajectory(tmp_path):
    cache = RunCache(tmp_path / "runs")
    rec = train(SMALL, cache=cache, progress=False)
    final = torch.stack([p.detach() for p in trained_model(SMALL, cache=cache).qk_weights().values()])
    snap = snapshot_run(SMALL, every=4)
    assert snap["steps"] == [4, 8, 12] and snap["W"].shape == (3, 4, 32, 32) and snap["G"].shape == (3, 4, 32, 32)
    torch.testing.assert_close(snap["W_final"], final, rtol=0, atol=0)
    mismatch, n = snapshot_record_mismatch(snap, rec)
    assert n == 12 and mismatch < 1e-6
    again = snapshot_run(SMALL, every=4)  # deterministic: the same trajectory again
    assert torch.equal(again["W"], snap["W"]) and again["steps"] == snap["steps"]
    df = trajectory_split(snap)
    assert set(df.direction) == {"task gradient", "L2 (W)", "LRD (NS(W))", "exact U Vᵀ"}
    by = df.groupby("direction").tan_share
    assert by.max()["L2 (W)"] < 1e-12 and by.min()["task gradient"] > 1 - 1e-9
    assert 0 < by.min()["LRD (NS(W))"] and by.max()["LRD (NS(W))"] < 1
    with pytest.raises(ValueError):
        snapshot_run(SMALL, every=0)


def test_trajectory_measures_are_kept_and_read_back(tmp_path):
    from lrdlib.runs.store import ResultStore
    from lrdlib.runs.trajectory import trajectory_measures
    cache = RunCache(tmp_path / "runs", store=ResultStore(tmp_path / "store" / "runs"))
    rec = train(SMALL, cache=cache, progress=False)
    first = SMALL.replace(steps=8)
    m = trajectory_measures(first, 4, rec, cache=cache)
    assert m["steps"] == [4, 8] and m["compared"] == 8 and m["mismatch"] < 10.0 ** (1 - rec["compact"]["figure_digits"])
    assert len(m["split"]) == 2 * 4 * 4 and len(m["checks"]["ns_over_polar"]) == 2
    assert list((tmp_path / "store" / "measures").rglob("*.trajectory-4.json"))   # committed beside the records
    other = RunCache(tmp_path / "elsewhere", store=ResultStore(tmp_path / "store" / "runs"))   # a fresh clone
    assert trajectory_measures(first, 4, {"targets": [], "tangential": {}}, cache=other) == m   # read, not recomputed


# ---------------------------------------------------------------------- subdifferential
def test_subgradient_slack_draws_needle_and_fan():
    d = lambda a, b: torch.diag(torch.tensor([a, b], dtype=D64))
    for z in (-1.0, 0.0, 0.7, 1.0):
        assert subgradient_slack(d(1.0, 0.0), d(1.0, z), n_points=500) >= -1e-12
    assert subgradient_slack(d(1.0, 0.0), d(1.0, 1.1), n_points=500) < 0
    assert subgradient_slack(d(1.0, 0.5), d(1.0, 1.0), n_points=500) >= -1e-12
    assert subgradient_slack(d(1.0, 0.5), d(1.0, 0.9), n_points=500) < 0


def test_diag_trajectories_of_the_three_decays():
    prox = diag_trajectory(make_decay(DecayConfig("svt", 0.1)).apply, (1.0, 0.25), 5)
    assert prox.shape == (6, 2) and float(prox[-1, 1]) == 0.0 and float(prox[-1, 0]) == pytest.approx(0.5)
    sub = diag_trajectory(make_decay(DecayConfig("lrd_polar", 0.1)).apply, (1.0, 0.25), 5)
    assert float(sub[3, 1]) == pytest.approx(-0.05) and abs(float(sub[-1, 1])) <= 0.1 + 1e-12
    ns = diag_trajectory(make_decay(DecayConfig("lrd_ns", 0.02)).apply, (1.0, 0.25), 10)
    assert (ns[1:, 1] > 0).all() and (ns[1:, 1] < ns[:-1, 1]).all()


# ------------------------------------------------------------------------ benchmark
def test_ns_vs_svd_benchmark_runs_small(tmp_path):
    spec = importlib.util.spec_from_file_location("ns_vs_svd", ROOT / "benchmarks" / "ns_vs_svd.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "b.json"
    res = mod.main(["--sizes", "8,16", "--batch", "2", "--repeats", "1", "--out", str(out)])
    assert out.exists() and res["device"] == "cpu" and res["dtype"] == "float32"
    assert [(r["n"], r["batch"]) for r in res["rows"]] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert all(r["svd_ms"] > 0 and r["svd/ns_cubic5"] > 0 for r in res["rows"])
    assert mod.repeats_for(4096, 5) == (3, False) and mod.repeats_for(128, 5) == (5, True)
    with pytest.raises(SystemExit):
        mod.main(["--sizes", "0", "--out", ""])


def test_angle_of_a_known_rotation_is_exact():
    """B = cos θ A + sin θ ‖A‖ T̂ (T̂ ⟂ A, unit) is A turned by θ in a plane: ∠(A, B) = θ, also
    for θ far below where arccos(cos θ) would lose every digit, and scale-free in A and B."""
    from lrdlib.core.polar_geometry import angle

    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 16, 12, generator=gen, dtype=torch.float64)
    T = torch.randn(3, 16, 12, generator=gen, dtype=torch.float64)
    T = T - (A * T).sum((-2, -1), keepdim=True) / (A * A).sum((-2, -1), keepdim=True) * A
    T = T / T.norm(dim=(-2, -1), keepdim=True) * A.norm(dim=(-2, -1), keepdim=True)
    # rtol: the rounding floor ε·√n/θ of ‖Â − B̂‖ (arccos of the cosine would give 0 at θ = 1e-9)
    for theta, rtol in ((1e-9, 1e-7), (1e-5, 1e-10), (0.3, 1e-14), (1.5, 1e-14), (3.0, 1e-14)):
        B = math.cos(theta) * A + math.sin(theta) * T
        want = torch.full((3,), theta, dtype=torch.float64)
        assert torch.allclose(angle(A, B), want, rtol=rtol, atol=0)
        assert torch.allclose(angle(2.5 * A, 0.1 * B), want, rtol=rtol, atol=0)
    assert torch.all(angle(A, A) == 0)
