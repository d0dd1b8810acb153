"""lrdlib.core.training on a small task (p = 23, d = 32): determinism, the record, grokking detection,
early stop, divergence, Euler's identity for the Q/K gradients, the cache, trained_model."""
import importlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrdlib.core import spectral
from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig, commutativity_ceiling, make_split
from lrdlib.core.decay import DecayConfig
from lrdlib.core.grok import steps_to_grok
from lrdlib.core.model import ModelConfig, build_model
from lrdlib.core.optim import OptimConfig
from lrdlib.core.polar_geometry import angle
from lrdlib.core.training import BatchSampler, evaluate
from lrdlib.runs import cache as cache_mod
from lrdlib.runs.cache import RunCache, train, trained_model

pytestmark = pytest.mark.usefixtures("single_thread")

import lrdlib.core.training as lt  # noqa: E402  (the module; ``lrdlib.train`` is lrdlib.runs.cache.train)

BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=60, eval_every=20, batch_size=64)
QK = ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight",
      "layers.1.attn.q_proj.weight", "layers.1.attn.k_proj.weight"]
SPECTRA_KEYS = {"stable_rank", "entropy_rank", "nuc_over_fro", "fro", "top_sv"}
TANG_KEYS = ({f"{a}_{b}" for a in ("grad", "opt", "decay", "update") for b in ("rad", "tan")}
             | {"angle_step", "angle_opt", "angle_decay", "angle_total", "angle_line", "angle_line_total"})


def _run(cfg):
    return train(cfg, use_cache=False, progress=False)


def _json(x):
    return json.loads(json.dumps(x))


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    """Nothing these tests train may land in the repository's build/cache."""
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def base_record():
    return _run(BASE)


# --------------------------------------------------------------------------- steps_to_grok
def test_steps_to_grok_never():
    assert steps_to_grok([], []) is None
    assert steps_to_grok([0], [1.0]) is None                       # one evaluation is not two in a row
    assert steps_to_grok([0, 10, 20], [0.1, 0.5, 0.98]) is None
    assert steps_to_grok([0, 10, 20, 30], [0.1, 0.995, 0.5, 0.995]) is None  # never twice in a row


def test_steps_to_grok_first_eval():
    assert steps_to_grok([0, 10, 20], [1.0, 1.0, 1.0]) == 0


def test_steps_to_grok_needs_two_consecutive():
    assert steps_to_grok([0, 10, 20, 30, 40], [0.1, 0.995, 0.3, 0.99, 1.0]) == 30
    assert steps_to_grok([5, 7, 9], [0.2, 0.99, 0.99]) == 7  # returns the step, not the index


def test_steps_to_grok_threshold():
    steps, acc = [0, 10, 20, 30], [0.2, 0.9, 0.95, 0.95]
    assert steps_to_grok(steps, acc) is None
    assert steps_to_grok(steps, acc, threshold=0.9) == 10
    assert steps_to_grok(steps, acc, threshold=0.95) == 20   # ≥, not >
    assert steps_to_grok(steps, acc, threshold=0.9500001) is None


# --------------------------------------------------------------------------- sampler / evaluate
def test_batch_sampler_epochs():
    s = BatchSampler(10, 4, seed=3, device=torch.device("cpu"))
    batches = [s.next() for _ in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    e1, e2 = torch.cat(batches[:3]), torch.cat(batches[3:])
    assert sorted(e1.tolist()) == list(range(10)) and sorted(e2.tolist()) == list(range(10))
    assert not torch.equal(e1, e2)
    s2 = BatchSampler(10, 4, seed=3, device=torch.device("cpu"))
    assert all(torch.equal(b, s2.next()) for b in batches)


def test_evaluate_matches_direct_computation():
    model = build_model(BASE.model, 0)
    split = make_split(BASE.task)
    with torch.no_grad():
        logits = model.forward_full(split.x_val)
    loss, acc = evaluate(model, split.x_val, split.y_val, chunk=37)  # several chunks
    assert abs(loss - F.cross_entropy(logits, split.y_val).item()) < 1e-5
    assert acc == (logits.argmax(-1) == split.y_val).sum().item() / len(split.y_val)


def test_train_step_probe_and_decay():
    model = build_model(BASE.model, 0)
    from lrdlib.core.decay import make_decay
    from lrdlib.core.optim import build_optimizers, split_targets
    opts = build_optimizers(model, OptimConfig(target_weight_decay=0.0), ("q_proj", "k_proj"))
    decay = make_decay(DecayConfig("l2", 0.1))
    params = [p for _, p in split_targets(model, ("q_proj", "k_proj"))[0]]
    split = make_split(BASE.task)
    probe = lt.Probe()
    lt.train_step(model, opts, decay, params, split.x_train[:64], split.y_train[:64], 1, probe)
    assert probe.W0.shape == probe.G.shape == probe.W1.shape == probe.W2.shape == (4, 32, 32)
    torch.testing.assert_close(probe.W2, 0.9 * probe.W1, atol=1e-7, rtol=0)
    torch.testing.assert_close(torch.stack([p.detach() for p in params]), probe.W2, atol=0, rtol=0)
    assert not torch.equal(probe.W1, probe.W0)


# --------------------------------------------------------------------------- runs
def test_determinism(base_record):
    again = _run(BASE)
    for k in ("history", "spectra", "tangential", "final_singular_values", "steps_run", "status", "key"):
        assert again[k] == base_record[k], k
    other = _run(BASE.replace(seed=1))
    assert other["history"]["train_loss"] != base_record["history"]["train_loss"]


def test_record_fields(base_record):
    rec = base_record
    assert rec["status"] == "ok"
    assert rec["key"] == BASE.key() and _json(rec["config"]) == _json(BASE.to_dict())
    assert RunConfig.from_dict(rec["config"]) == BASE
    assert rec["steps_run"] == 60
    h = rec["history"]
    assert h["step"] == [0, 20, 40, 60]
    for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert len(h[k]) == 4 and all(math.isfinite(v) for v in h[k])
    assert all(0 <= a <= 1 for a in h["train_acc"] + h["val_acc"])
    assert h["train_loss"][-1] < h["train_loss"][0]  # it learns something in 60 steps
    assert rec["final_val_acc"] == h["val_acc"][-1] and rec["final_train_acc"] == h["train_acc"][-1]
    assert rec["max_val_acc"] == max(h["val_acc"])
    assert rec["steps_to_grok"] == steps_to_grok(h["step"], h["val_acc"], BASE.grok_threshold)
    assert rec["grokked"] == (rec["steps_to_grok"] is not None)
    assert rec["commutativity_ceiling"] == commutativity_ceiling(make_split(BASE.task))
    assert rec["targets"] == QK
    assert set(rec["spectra"]) == set(QK) and set(rec["final_singular_values"]) == set(QK)
    for n in QK:
        sp = rec["spectra"][n]
        assert set(sp) == SPECTRA_KEYS
        assert all(len(v) == 4 for v in sp.values())
        assert all(len(row) == 8 for row in sp["top_sv"])
        assert all(1 - 1e-6 <= r <= 32 for r in sp["stable_rank"] + sp["entropy_rank"])
        sv = rec["final_singular_values"][n]
        assert len(sv) == 32 and sv == sorted(sv, reverse=True)
        # the last evaluation's spectra are those of the final weights
        assert sp["top_sv"][-1] == pytest.approx(sv[:8], rel=1e-6)
        assert sp["fro"][-1] == pytest.approx(math.sqrt(sum(s * s for s in sv)), rel=1e-5)
        assert sp["stable_rank"][-1] == pytest.approx(sum(s * s for s in sv) / sv[0] ** 2, rel=1e-5)
    t = rec["tangential"]
    assert t["step"] == [20, 40, 60]
    for n in QK:
        assert set(t[n]) == TANG_KEYS and all(len(v) == 3 for v in t[n].values())
        assert all(v == 0 for v in t[n]["decay_rad"] + t[n]["decay_tan"] + t[n]["angle_decay"])  # no decay
        assert t[n]["angle_step"] == pytest.approx(t[n]["angle_opt"], rel=1e-9)
        # the total angle travelled is the running sum of 20 steps × the mean angle per step
        assert t[n]["angle_total"] == pytest.approx(list(np.cumsum([20 * a for a in t[n]["angle_step"]])), rel=1e-9)
    assert rec["ms_per_step"] > 0 and rec["wall_time_s"] > 0
    json.dumps(rec, allow_nan=False)  # JSON-able, and no NaN/inf in a healthy run (raises otherwise)


def test_first_evaluation_is_the_initial_model(base_record):
    model = build_model(BASE.model, BASE.seed)
    split = make_split(BASE.task)
    tl, ta = evaluate(model, split.x_train, split.y_train)
    vl, va = evaluate(model, split.x_val, split.y_val)
    h = base_record["history"]
    assert (h["train_loss"][0], h["train_acc"][0], h["val_loss"][0], h["val_acc"][0]) == (tl, ta, vl, va)
    W = model.layers[0].attn.q_proj.weight.detach()
    sr0 = base_record["spectra"][QK[0]]["stable_rank"][0]
    assert sr0 == pytest.approx(spectral.stable_rank(W.double()).item(), rel=1e-5)


def test_qk_gradient_is_tangential_with_qk_norm(base_record):
    # Euler: f(αW) = f(W) ⇒ ⟨∇f(W), W⟩ = 0 for W_Q, W_K under QK-Norm
    for n in QK:
        t = base_record["tangential"][n]
        assert all(tan > 1e-4 for tan in t["grad_tan"])
        assert all(abs(r) < 1e-5 * tan for r, tan in zip(t["grad_rad"], t["grad_tan"])), n


def test_qk_gradient_has_radial_part_without_qk_norm():
    rec = _run(BASE.replace(model__qk_norm=False))
    ratios = [abs(r) / tan for n in QK for r, tan in zip(rec["tangential"][n]["grad_rad"],
                                                         rec["tangential"][n]["grad_tan"])]
    assert max(ratios) > 1e-3


def test_l2_decay_displacement_is_radial():
    lam = 0.01
    rec = _run(BASE.replace(decay=DecayConfig("l2", lam), optim__target_weight_decay=0.0))
    for n in QK:
        t, fro = rec["tangential"][n], rec["spectra"][n]["fro"]
        # tangential part: float32 rounding of W₁ − W₂ only (~1e-6 relative; LRD's is ~0.3)
        assert all(tan < 1e-4 * r for r, tan in zip(t["decay_rad"], t["decay_tan"]))
        # radial norm of λ W₁ is λ‖W₁‖_F; ‖W₂‖ = (1 − λ)‖W₁‖ is what the next evaluation sees
        for r, f in zip(t["decay_rad"], fro[1:]):
            assert r == pytest.approx(lam * f / (1 - lam), rel=1e-4)


def test_lrd_decay_displacement_has_ns_norm():
    alpha = 0.005
    rec = _run(BASE.replace(decay=DecayConfig("lrd_ns", alpha), optim__target_weight_decay=0.0))
    assert rec["status"] == "ok"
    for n in QK:
        t = rec["tangential"][n]
        for r, tan in zip(t["decay_rad"], t["decay_tan"]):
            assert r > 0 and tan > 0  # NS(W) has both a radial and a tangential part
            # ‖α NS(W)‖_F ≤ α √32 · max φ and > 0; with 5 cubic steps φ ∈ (0, 1]
            assert 0 < math.hypot(r, tan) <= alpha * math.sqrt(32) * (1 + 1e-5)


def test_luon_run_ok_and_qk_update_step_size():
    cfg = BASE.replace(optim=OptimConfig(kind="luon", weight_decay=0.0, luon_lambda=0.5, muon_lr=0.02))
    rec = _run(cfg)
    assert rec["status"] == "ok"
    for n in QK:
        t = rec["tangential"][n]
        for r, tan in zip(t["update_rad"], t["update_tan"]):
            assert 0 < math.hypot(r, tan) <= 0.02 * math.sqrt(32) * (1 + 1e-5)


def test_early_stop(base_record):
    cfg = BASE.replace(early_stop=True, grok_threshold=1e-6)
    rec = _run(cfg)
    # val acc > 0 at steps 0 and 20 (as the base run shows) -> grok at 0, stop after step 20
    assert min(base_record["history"]["val_acc"][:2]) > 0
    assert rec["status"] == "ok" and rec["steps_to_grok"] == 0 and rec["grokked"]
    assert rec["steps_run"] == 20 and rec["history"]["step"] == [0, 20]
    assert rec["history"]["val_acc"] == base_record["history"]["val_acc"][:2]
    no_stop = _run(BASE.replace(grok_threshold=1e-6, steps=40))
    assert no_stop["steps_run"] == 40 and no_stop["steps_to_grok"] == 0


def _nan_after(monkeypatch, k, only_mean=False):
    real = F.cross_entropy
    calls = {"n": 0}

    def ce(*args, **kw):
        out = real(*args, **kw)
        if only_mean and kw.get("reduction", "mean") != "mean":
            return out
        calls["n"] += 1
        return out + float("nan") if calls["n"] > k else out  # NaN loss, finite gradients

    monkeypatch.setattr(lt.F, "cross_entropy", ce)
    return calls


def test_nan_loss_gives_diverged_record(monkeypatch, tmp_path):
    # 2 calls for the step-0 evaluation, 20 steps, 2 for the step-20 evaluation: NaN from step 21
    _nan_after(monkeypatch, 24)
    cache = RunCache(tmp_path)
    rec = train(BASE, cache=cache, progress=False)
    assert rec["status"] == "diverged"
    assert rec["steps_run"] == 40 and rec["history"]["step"] == [0, 20, 40]
    assert rec["history"]["train_loss"][-1] is None and rec["history"]["val_loss"][-1] is None  # NaN → null
    assert rec["final_val_acc"] == rec["history"]["val_acc"][-1]
    assert not rec["grokked"]
    assert cache.load(BASE) == rec  # saved as strict JSON (NaN → null), read back unchanged
    assert "NaN" not in cache.record_path(BASE).read_text()


def test_nan_minibatch_loss_alone_gives_diverged(monkeypatch):
    # evaluation stays finite; the minibatch loss is NaN from step 5 on: caught at step 20
    _nan_after(monkeypatch, 4, only_mean=True)
    rec = _run(BASE)
    assert rec["status"] == "diverged" and rec["steps_run"] == 20
    assert all(math.isfinite(v) for v in rec["history"]["train_loss"])


def test_huge_lr_gives_diverged_record_without_raising():
    rec = _run(BASE.replace(optim__lr=1e6, steps=40, eval_every=10))
    assert rec["status"] == "diverged" and rec["steps_run"] < 40


# --------------------------------------------------------------------------- cache and trained_model
@pytest.fixture()
def cached_run(tmp_path):
    cache = RunCache(tmp_path / "cache")
    rec = train(BASE, cache=cache, progress=False)
    return cache, rec


def _forbid_run(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("_run must not be called: the record is cached")
    monkeypatch.setattr(cache_mod, "run", boom)


def test_train_with_cache_reuses_record(cached_run, monkeypatch, base_record):
    cache, rec1 = cached_run
    assert cache.record_path(BASE).exists() and cache.weights_path(BASE).exists()
    assert rec1["history"] == base_record["history"]
    _forbid_run(monkeypatch)
    rec2 = train(BASE, cache=cache, progress=False)
    assert rec2 == _json(rec1)
    # the guard is live: without the cache, or for another config, _run is called
    with pytest.raises(AssertionError, match="must not be called"):
        train(BASE, cache=cache, use_cache=False, progress=False)
    with pytest.raises(AssertionError, match="must not be called"):
        train(BASE.replace(seed=1), cache=cache, progress=False)


def test_cache_hit_returns_identical_record(cached_run):
    cache, rec1 = cached_run
    rec2 = train(BASE, cache=cache, progress=False)
    assert rec2 == rec1


def test_trained_model_reproduces_final_accuracy(cached_run, monkeypatch):
    cache, rec = cached_run
    _forbid_run(monkeypatch)
    model = trained_model(BASE, cache)
    split = make_split(BASE.task)
    assert evaluate(model, split.x_val, split.y_val)[1] == rec["final_val_acc"]
    assert evaluate(model, split.x_train, split.y_train)[1] == rec["final_train_acc"]
    W = torch.stack([dict(model.named_parameters())[n].detach() for n in QK])
    sv = spectral.singular_values(W).tolist()
    for n, s in zip(QK, sv):
        assert s == pytest.approx(rec["final_singular_values"][n], rel=1e-6, abs=1e-7)
    # and it is not just the initial model
    assert evaluate(build_model(BASE.model, BASE.seed), split.x_train, split.y_train)[1] != rec["final_train_acc"]


def test_trained_model_trains_when_missing(tmp_path, monkeypatch):
    cfg = BASE.replace(steps=20)
    cache = RunCache(tmp_path / "c2")
    calls = []
    real = cache_mod.run

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(cache_mod, "run", counting)
    m1 = trained_model(cfg, cache)
    m2 = trained_model(cfg, cache)
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_trained_model_retrains_when_weights_file_is_missing(cached_run):
    cache, rec = cached_run
    cache.weights_path(BASE).unlink()
    model = trained_model(BASE, cache)
    split = make_split(BASE.task)
    assert evaluate(model, split.x_val, split.y_val)[1] == rec["final_val_acc"]


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", None], ids=["empty", "garbage", "truncated"])
def test_trained_model_retrains_when_weights_file_is_corrupt(cached_run, content):
    cache, rec = cached_run
    data = cache.weights_path(BASE).read_bytes()
    cache.weights_path(BASE).write_bytes(data[: len(data) // 2] if content is None else content)
    model = trained_model(BASE, cache)
    split = make_split(BASE.task)
    assert evaluate(model, split.x_val, split.y_val)[1] == rec["final_val_acc"]
    assert cache.load_weights(BASE) is not None                 # rewritten


def test_probe_hook_sees_every_step_and_leaves_the_trajectory_alone(base_record):
    seen = []
    rec, _ = lt.run(BASE, probe_every=7, on_probe=lambda s, p: seen.append((s, p.W0.shape, p.G.shape)))
    assert [s for s, _, _ in seen] == list(range(7, BASE.steps + 1, 7))
    assert seen[0][1] == seen[0][2] == (4, 32, 32)
    assert rec["history"] == base_record["history"] and rec["spectra"] == base_record["spectra"]
    with pytest.raises(ValueError, match="probe_every=0"):
        lt.run(BASE, probe_every=0, on_probe=print)


def test_cuda_device_without_cuda_raises():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        _run(BASE.replace(device="cuda"))


# --------------------------------------------------------------------------- angles, fixed norm, Q/K lr (notebook 07)
def test_angle_meter_matches_the_angle_of_every_step():
    """The recorded mean angle per step is the mean of ∠(W before, W after) over the steps."""
    cfg = BASE.replace(steps=10, eval_every=5, decay=DecayConfig("lrd_ns", 0.01), optim__target_weight_decay=0.0)
    per_step = []
    rec, _ = lt.run(cfg, probe_every=1, on_probe=lambda s, p: per_step.append(
        [float(a) for a in angle(p.W0.double(), p.W2.double())]))
    got = rec["tangential"][QK[0]]
    want = np.array(per_step)[:, 0]
    assert got["angle_step"] == pytest.approx([want[:5].mean(), want[5:].mean()], rel=1e-9)
    assert got["angle_total"][-1] == pytest.approx(want.sum(), rel=1e-9)
    assert all(a > 0 for a in got["angle_decay"])


def test_fixed_norm_run_keeps_every_target_at_radius_r():
    r = 0.3
    cfg = BASE.replace(decay=DecayConfig("fixed_norm", r), optim__target_weight_decay=0.0)
    rec = _run(cfg)
    for n in QK:
        assert rec["spectra"][n]["fro"][1:] == pytest.approx([r] * 3, rel=1e-6)


def test_target_lr_scale_scales_only_the_targets_learning_rate():
    from lrdlib.core.optim import build_optimizers

    for kind, base_lr in (("adamw", 1e-3), ("luon", 0.02), ("muon", 0.02)):
        cfg = OptimConfig(kind=kind, target_lr_scale=4.0)
        model = build_model(BASE.model, 0)
        lrs = {id(p): g["lr"] for o in build_optimizers(model, cfg, BASE.targets) for g in o.param_groups
               for p in g["params"]}
        for name, p in model.named_parameters():
            want = base_lr * 4 if name in QK else 1e-3
            assert lrs[id(p)] == pytest.approx(want), (kind, name)
    with pytest.raises(ValueError, match="target_lr_scale=0.0"):
        OptimConfig(target_lr_scale=0)


def test_fixed_norm_projection_leaves_the_qk_norm_model_unchanged():
    from lrdlib.core.decay import apply_decay, make_decay

    model = build_model(BASE.model, 0).double()
    x = make_split(BASE.task).x_train[:50]
    before = model(x)
    targets = [p for n, p in model.named_parameters() if n in QK]
    apply_decay(make_decay(DecayConfig("fixed_norm", 0.05)), targets, step=1)
    assert torch.allclose(torch.stack([p.norm() for p in targets]), torch.full((4,), 0.05, dtype=torch.float64),
                          rtol=1e-6, atol=0)
    assert torch.allclose(model(x), before, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="strength=0.0"):
        DecayConfig("fixed_norm", 0.0)


def test_train_function_does_not_hide_the_training_module():
    import lrdlib

    assert lrdlib.train is cache_mod.train and lrdlib.trained_model is cache_mod.trained_model
    assert importlib.import_module("lrdlib.core.training") is lt and lt.run and lt.AngleMeter


def test_trained_model_on_a_fresh_machine_retrains_but_leaves_the_store_record(tmp_path):
    """The store keeps no weights: on a fresh machine trained_model retrains the run for them, and
    must not rewrite the committed record (its bytes are the reference the figures come from)."""
    from lrdlib.runs.store import ResultStore

    cfg = BASE.replace(steps=20)
    store = ResultStore(tmp_path / "results" / "runs")
    rec = train(cfg, cache=RunCache(tmp_path / "machine-1", store=store), progress=False)
    path = store.file(cfg.key())
    path.write_bytes(path.read_bytes())          # the committed bytes, as a clone has them
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    fresh = RunCache(tmp_path / "machine-2", store=ResultStore(store.root))   # no build folder, no weights
    model = trained_model(cfg, fresh)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert fresh.weights_path(cfg).exists() and not fresh.record_path(cfg).exists()
    split = make_split(cfg.task)
    assert evaluate(model, split.x_val, split.y_val)[1] == pytest.approx(rec["final_val_acc"], abs=1e-7)  # compact: 7 digits


def test_line_angle_sees_a_sign_flip_as_no_turn():
    """A step W → −W (LRD overshooting, every σᵢ < α) turns W by π but its line by 0; a plain
    rotation by θ < π/2 turns both by θ. Totals accumulate across flushes."""
    W0 = torch.eye(3, dtype=torch.float64)[:, :2].T.contiguous().unsqueeze(0).repeat(2, 1, 1)  # two 2×3 matrices
    c, s_ = math.cos(0.3), math.sin(0.3)
    rot = torch.tensor([[c, -s_], [s_, c]], dtype=torch.float64)
    W2 = torch.stack([-W0[0], rot @ W0[1]])
    m = lt.AngleMeter(2)
    m.update(W0, W0.clone(), W2)
    out = m.flush()
    assert out["angle_step"].tolist() == pytest.approx([math.pi, 0.3], abs=1e-7)
    assert out["angle_line"].tolist() == pytest.approx([0.0, 0.3], abs=1e-7)
    m.update(W0, W0.clone(), W2)
    assert m.flush()["angle_line_total"].tolist() == pytest.approx([0.0, 0.6], abs=1e-6)


def test_a_cpu_run_flushes_subnormal_floats_so_a_decayed_model_does_not_crawl():
    """L2 at λ 10 decays every weight towards 0; on subnormal floats x86 is about 30× slower."""
    from lrdlib.core.training import run
    try:
        torch.set_flush_denormal(False)
        assert (torch.tensor([1e-39]) * 1.0).item() != 0.0      # subnormal kept
        run(BASE.replace(steps=2, eval_every=2), progress=False)
        assert (torch.tensor([1e-39]) * 1.0).item() == 0.0      # flushed to zero
    finally:
        torch.set_flush_denormal(False)
