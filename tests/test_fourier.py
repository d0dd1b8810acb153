"""lrdlib.fourier (embedding spectrum, key frequencies, Gini, restricted/excluded loss, phases) on
planted solutions and random ones, and lrdlib.checkpoints (model states along a run, no second loop)."""
import math

import pytest
import torch

from lrdlib.analysis import fourier as fo
from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig
from lrdlib.core.model import ModelConfig, build_model
from lrdlib.core.training import run
from lrdlib.runs.cache import RunCache, train
from lrdlib.runs.checkpoints import measure_along, measure_many, states_along

pytestmark = pytest.mark.usefixtures("single_thread")

P = 23


def planted_embedding(p: int, keys, d: int = 16, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """E[a] = Σ_k cos(w_k a) u_k + sin(w_k a) v_k (+ noise): an embedding that uses only ``keys``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.arange(p, dtype=torch.float64)[:, None]
    E = noise * torch.randn(p, d, generator=g, dtype=torch.float64)
    for k in keys:
        w = 2 * math.pi * k / p
        E += torch.cos(w * a) * torch.randn(1, d, generator=g, dtype=torch.float64)
        E += torch.sin(w * a) * torch.randn(1, d, generator=g, dtype=torch.float64)
    return E


def planted_table(p: int, keys, amp: float = 8.0) -> torch.Tensor:
    """L[a, b, c] = amp Σ_k cos(w_k(a + b − c)) + a per-pair constant: the algorithm's logits."""
    a = torch.arange(p)
    t = (a[:, None, None] + a[None, :, None] - a[None, None, :]) % p
    L = sum(amp * torch.cos(2 * math.pi * k * t.double() / p) for k in keys)
    return L + torch.randn(p, p, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# --------------------------------------------------------------------------- spectrum, keys, Gini
def test_basis_orthonormal():
    B = fo.fourier_basis(11)
    assert B.shape == (11, 11)
    assert torch.allclose(B @ B.T, torch.eye(11, dtype=torch.float64), atol=1e-12)


def test_spectrum_is_parseval_and_finds_planted_frequencies():
    E = planted_embedding(P, [2, 7], noise=0.05)
    spec = fo.embedding_spectrum(E)
    assert spec.shape == (fo.n_frequencies(P) + 1,)
    assert torch.allclose(spec.pow(2).sum(), E.pow(2).sum())
    assert fo.key_frequencies(spec) == [2, 7]
    # one pure wave puts all its norm at its own frequency
    a = torch.arange(P, dtype=torch.float64)[:, None]
    pure = torch.sin(2 * math.pi * 5 * a / P) * torch.ones(1, 3, dtype=torch.float64)
    s = fo.embedding_spectrum(pure)
    assert s[5] ** 2 == pytest.approx(float(pure.pow(2).sum())) and float(s.pow(2).sum() - s[5] ** 2) < 1e-20


def test_random_embedding_has_no_key_frequency_and_low_gini():
    E = torch.randn(113, 128, generator=torch.Generator().manual_seed(0))
    spec = fo.embedding_spectrum(E)
    assert fo.key_frequencies(spec) == []
    assert fo.gini(spec[1:]) < 0.1
    planted = fo.embedding_spectrum(planted_embedding(113, [4, 17, 40], d=128, noise=0.01))
    assert fo.key_frequencies(planted) == [4, 17, 40] and fo.gini(planted[1:]) > 0.9


def test_model_built_from_known_frequencies():
    cfg = ModelConfig(vocab_size=P + 1, dim=32, heads=4, mlp_dim=64)
    model = build_model(cfg, 0)
    with torch.no_grad():
        model.embedding.weight[:P] = planted_embedding(P, [3, 8], d=32, noise=0.02).float()
    E = fo.residue_embedding(model.state_dict(), P)
    assert E.shape == (P, 32)
    assert fo.key_frequencies(fo.embedding_spectrum(E)) == [3, 8]


def test_gini_hand_values_and_errors():
    assert fo.gini([1, 1, 1, 1]) == pytest.approx(0.0, abs=1e-15)
    assert fo.gini([0, 0, 0, 5]) == pytest.approx(0.75)
    assert fo.gini([3, 1, 2]) == pytest.approx(4 / 18)
    assert fo.gini([0, 0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        fo.gini([1, -1])


@pytest.mark.parametrize("ratio", [1.0, 0.5, -2])
def test_key_ratio_must_exceed_one(ratio):
    with pytest.raises(ValueError, match=f"ratio={ratio!r}"):
        fo.key_frequencies(torch.ones(10), ratio)


@pytest.mark.parametrize("p", [4, 1, 10])
def test_even_or_tiny_modulus_rejected(p):
    with pytest.raises(ValueError, match=f"p={p!r}"):
        fo.n_frequencies(p)


# --------------------------------------------------------------------------- projections and losses
def test_sum_diff_coefficients_match_brute_force_inner_products():
    p = 7
    L = torch.randn(p, p, p, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    coef = fo.sum_diff_coefficients(L)
    a = torch.arange(p)
    t = ((a[:, None, None] + a[None, :, None] - a[None, None, :]) % p).double()
    for k in range(1, 4):
        w = 2 * math.pi * k / p
        assert coef[k - 1, 0] == pytest.approx(float((L * torch.cos(w * t)).sum() / (p ** 3 / 2)), abs=1e-12)
        assert coef[k - 1, 1] == pytest.approx(float((L * torch.sin(w * t)).sum() / (p ** 3 / 2)), abs=1e-12)


def test_planted_table_coefficients_and_component():
    L = planted_table(P, [3, 9], amp=2.0)
    coef = fo.sum_diff_coefficients(L)
    want = torch.zeros_like(coef)
    want[2, 0] = want[8, 0] = 2.0
    assert torch.allclose(coef, want, atol=1e-10)
    # the component is the planted waves: removing it leaves the per-pair constant only
    rest = fo.excluded_logits(L, [3, 9])
    assert torch.allclose(rest - rest.mean(-1, keepdim=True), torch.zeros_like(rest), atol=1e-10)


def test_planted_solution_restricted_low_excluded_high():
    keys = [3, 7, 9]
    L = planted_table(P, keys)
    idx = torch.arange(P * P)
    train, val = idx[::2], idx[1::2]
    full = fo.table_loss(L, val)
    assert full < 0.01
    assert fo.table_loss(fo.restricted_logits(L, keys), val) == pytest.approx(full, abs=1e-9)
    assert fo.table_loss(fo.excluded_logits(L, keys), train) == pytest.approx(math.log(P), abs=1e-9)
    # the wrong frequencies explain nothing: restricted loss is chance, excluded loss unchanged
    assert fo.table_loss(fo.restricted_logits(L, [1, 2]), val) == pytest.approx(math.log(P), abs=1e-9)
    assert fo.table_loss(fo.excluded_logits(L, [1, 2]), train) == pytest.approx(fo.table_loss(L, train), abs=1e-9)


def test_random_table_restricted_near_chance_excluded_near_own_loss():
    L = 3 * torch.randn(P, P, P, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    idx = torch.arange(P * P)
    keys = [2, 5]
    assert abs(fo.table_loss(fo.restricted_logits(L, keys), idx) - math.log(P)) < 0.05
    own = fo.table_loss(L, idx)
    assert own > math.log(P) + 1
    assert abs(fo.table_loss(fo.excluded_logits(L, keys), idx) - own) < 0.1 * own


def test_measures_of_planted_solution():
    keys = [3, 7, 9]
    idx = torch.arange(P * P)
    m = fo.measures(planted_table(P, keys), planted_embedding(P, keys, noise=0.05), idx[::2], idx[1::2], keys)
    # three equal frequencies of 11: Gini (11 − 3)/11 ≈ 0.73 at most
    assert m["restricted_loss"] < 0.01 and m["excluded_loss"] > 3 and m["gini"] > 0.65 and m["key_share"] > 0.95
    assert m["logit_key_share"] == pytest.approx(1.0)
    r = fo.measures(3 * torch.randn(P, P, P, generator=torch.Generator().manual_seed(4), dtype=torch.float64),
                    torch.randn(P, 16, generator=torch.Generator().manual_seed(4)), idx[::2], idx[1::2], keys)
    assert r["logit_key_share"] < 0.5 and r["gini"] < 0.4 and r["restricted_loss"] > 3
    assert len(m["spectrum"]) == fo.n_frequencies(P) + 1


def test_logit_key_frequencies_planted_and_random():
    L = planted_table(P, [3, 7, 9]) + planted_table(P, [5], amp=0.2) - torch.randn(P, P, 1, generator=torch.Generator().manual_seed(1),
                                                                                 dtype=torch.float64)
    assert fo.logit_key_frequencies(L) == [3, 7, 9], "a weak wave (0.2 against 8) is not key"
    assert fo.logit_key_frequencies(L, energy=1.0) == [3, 5, 7, 9]
    R = torch.randn(P, P, P, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert len(fo.logit_key_frequencies(R)) > fo.n_frequencies(P) // 2, "no sparse circuit in a random table"
    assert fo.logit_key_frequencies(torch.zeros(P, P, P)) == []
    with pytest.raises(ValueError, match="energy=0"):
        fo.logit_key_frequencies(L, energy=0)


def test_bad_keys_rejected():
    with pytest.raises(ValueError, match=r"keys \[0, 12\]"):
        fo.key_component(planted_table(P, [1]), [0, 12, 3])


def test_logit_table_order_is_a_b_c():
    cfg = ModelConfig(vocab_size=12, dim=16, heads=4, mlp_dim=32)
    model = build_model(cfg, 1)
    L = fo.logit_table(model, 11)
    with torch.no_grad():
        one = model(torch.tensor([[4, 9, 11]]))[0, :11].double()
    assert L.shape == (11, 11, 11) and torch.allclose(L[4, 9], one, atol=1e-6)


# --------------------------------------------------------------------------- phases
def test_phase_boundaries_planted_curves():
    steps = [0, 100, 200, 300, 400, 500, 600]
    train = [0.1, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0]
    val = [0.0, 0.3, 0.5, 0.52, 0.6, 0.9, 1.0]
    # plateau 0.5 at memorisation (200): clean-up when val ≥ 0.55 (400), grokked at 600
    assert fo.phase_boundaries(steps, train, val) == {"memorised": 200, "cleanup": 400, "grokked": 600}
    assert fo.phase_boundaries(steps, [0.5] * 7, val) == {"memorised": None, "cleanup": None, "grokked": None}
    flat = fo.phase_boundaries(steps, train, [0.5] * 7)
    assert flat == {"memorised": 200, "cleanup": None, "grokked": None}


def test_phase_boundaries_errors():
    with pytest.raises(ValueError, match="differ in length"):
        fo.phase_boundaries([0, 1], [0.1], [0.1, 0.2])
    with pytest.raises(ValueError, match="rise=1.5"):
        fo.phase_boundaries([0], [1.0], [1.0], rise=1.5)


# --------------------------------------------------------------------------- states along a run
TINY = RunConfig(task=TaskConfig(p=P, train_frac=0.5), model=ModelConfig(vocab_size=P + 1, dim=32, heads=4, mlp_dim=64),
                 steps=40, eval_every=20, batch_size=64)


def test_states_along_reads_only_and_keeps_the_evaluated_weights():
    rec, state, states = states_along(TINY, 20)
    ref, ref_state = run(TINY)
    assert rec["history"] == ref["history"], "the hook changed the trajectory"
    assert sorted(states) == [0, 20, 40]
    init = build_model(TINY.model, TINY.seed).state_dict()
    assert all(torch.equal(states[0][k], init[k]) for k in init)
    assert all(torch.equal(states[40][k], ref_state[k]) for k in ref_state)
    assert not all(torch.equal(states[20][k], states[40][k]) for k in init)


def test_measure_along_caches_measures_and_record(tmp_path, monkeypatch):
    cache = RunCache(tmp_path)
    rec, m = measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=cache)
    assert m["steps"] == [0, 20, 40] and len(m["restricted_loss"]) == 3 and len(m["spectrum"][0]) == fo.n_frequencies(P) + 1
    assert isinstance(m["keys"], list) and isinstance(m["embedding_keys"], list) and len(m["logit_key_share"]) == 3
    assert all(math.isfinite(v) for k in ("train_loss", "val_loss", "excluded_loss", "gini") for v in m[k])
    assert train(TINY, cache=cache, progress=False)["history"] == rec["history"]   # read back, same record
    import lrdlib.runs.checkpoints as ck
    monkeypatch.setattr(ck, "states_along", lambda *a, **k: pytest.fail("retrained a cached measure"))
    rec2, m2 = measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=cache)
    assert m2 == m and rec2["key"] == rec["key"]
    assert measure_many([TINY], 20, fo.progress, fo.FOURIER_TAG, cache=cache) == [(rec2, m2)]


def test_measure_along_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="tag='a/b'"):
        measure_along(TINY, 20, fo.progress, "a/b", cache=RunCache(tmp_path))
    with pytest.raises(ValueError, match="every=0"):
        states_along(TINY, 0)
    with pytest.raises(ValueError, match="op='sub'"):
        fo.progress(TINY.replace(task__op="sub"), {}, {})


@pytest.mark.slow
def test_measure_many_in_a_process_pool_equals_in_process(tmp_path):
    cfgs = [TINY, TINY.replace(seed=1, task__split_seed=1)]
    pooled = measure_many(cfgs, 20, fo.progress, fo.FOURIER_TAG, cache=RunCache(tmp_path / "pool"), workers=2)
    inline = measure_many(cfgs, 20, fo.progress, fo.FOURIER_TAG, cache=RunCache(tmp_path / "inline"), workers=1)
    for (r1, m1), (r2, m2) in zip(pooled, inline):
        assert r1["history"] == r2["history"] and m1["keys"] == m2["keys"]
        assert m1["restricted_loss"] == pytest.approx(m2["restricted_loss"], rel=1e-6)


def test_measures_are_committed_with_the_store_and_read_on_a_fresh_machine(tmp_path, monkeypatch):
    from lrdlib.runs.store import ResultStore

    store = ResultStore(tmp_path / "results" / "runs")
    rec, m = measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=RunCache(tmp_path / "cache", store=store))
    assert store.measures_path(TINY.key(), fo.FOURIER_TAG, 20).exists()
    assert store.measures_root == tmp_path / "results" / "measures"
    assert len(store.files()) == 1          # the measures are not taken for records
    import lrdlib.runs.checkpoints as ck
    monkeypatch.setattr(ck, "states_along", lambda *a, **k: pytest.fail("retrained a committed measure"))
    fresh = RunCache(tmp_path / "new-machine-cache", store=ResultStore(store.root))   # no build folder
    assert measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=fresh) == (rec, m)


def test_measures_of_the_same_run_made_on_the_other_device_are_read(tmp_path, monkeypatch):
    """A CPU notebook reads the record and measures of its config made on a GPU (and back)."""
    from lrdlib.runs.store import ResultStore

    store = ResultStore(tmp_path / "runs")
    rec, m = measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=RunCache(tmp_path / "c1", store=store))
    gpu = TINY.replace(device="cuda")           # as if made on a GPU: move the files to the cuda config's key
    moved = {**rec, "key": gpu.key(), "config": gpu.to_dict()}
    store.save(gpu, moved)
    src, dst = store.measures_path(TINY.key(), fo.FOURIER_TAG, 20), store.measures_path(gpu.key(), fo.FOURIER_TAG, 20)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(src.read_text().replace(TINY.key(), gpu.key()))
    store.path(TINY.key()).unlink()
    src.unlink()
    import lrdlib.runs.checkpoints as ck
    monkeypatch.setattr(ck, "states_along", lambda *a, **k: pytest.fail("retrained a run the store holds"))
    rec2, m2 = measure_along(TINY, 20, fo.progress, fo.FOURIER_TAG, cache=RunCache(tmp_path / "c2", store=store))
    assert rec2["key"] == gpu.key() and rec2["config"]["device"] == "cuda" and m2 == m
