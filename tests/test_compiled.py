"""RunConfig(compile=True): the training step through torch.compile (``compile_model``) and the
compile-safe row gather (``gather_rows``), both in lrdlib.core.model. A compiled run is deterministic, follows
the eager run to rounding, compiles full batches only, and has its own cache key."""
import importlib
import shutil

import pytest
import torch
import torch.nn.functional as F

from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig
from lrdlib.core.model import ModelConfig, _GatherRows, build_model, compile_model, gather_rows

pytestmark = pytest.mark.usefixtures("single_thread")
lt = importlib.import_module("lrdlib.core.training")

# 264 training pairs, batches of 64: 4 full batches and a short one (8) per epoch
BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=30, eval_every=10, batch_size=64)


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "default-cache"))


# --------------------------------------------------------------------------- gather_rows
def test_gather_rows_is_embedding_eagerly():
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(10, 6, generator=gen, requires_grad=True)
    idx = torch.randint(10, (5, 3), generator=gen)
    g = torch.randn(5, 3, 6, generator=gen)
    out = gather_rows(table, idx)
    ref = F.embedding(idx, table)
    assert torch.equal(out, ref)
    assert torch.equal(torch.autograd.grad(out, table, g)[0], torch.autograd.grad(ref, table, g)[0])


def test_gather_rows_function_gradcheck_with_repeated_rows():
    table = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 3, 3], [6, 0, 0]])   # repeated rows: the backward must sum them
    assert torch.autograd.gradcheck(lambda t: _GatherRows.apply(t, idx), (table,))


def test_gather_rows_under_compile_matches_eager():
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(12, 8, generator=gen, requires_grad=True)
    idx = torch.randint(12, (16, 3), generator=gen)
    f = lambda t, i: gather_rows(t, i).tanh().sum()  # noqa: E731
    g_eager = torch.autograd.grad(f(table, idx), table)[0]
    g_comp = torch.autograd.grad(torch.compile(f, fullgraph=True)(table, idx), table)[0]
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-6, atol=1e-6)


def test_gather_rows_bad_input():
    with pytest.raises(ValueError, match="2-D table"):
        gather_rows(torch.randn(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer index"):
        gather_rows(torch.randn(3, 4), torch.zeros(2))


def test_compile_field_validation_key_and_round_trip():
    with pytest.raises(ValueError, match="compile=2"):
        BASE.replace(compile=2)
    comp = BASE.replace(compile=True)
    assert comp.key() != BASE.key()
    assert RunConfig.from_dict(comp.to_dict()) == comp
    old = BASE.to_dict()
    old.pop("compile")                           # a record written before the field existed
    assert RunConfig.from_dict(old) == BASE


def test_compile_without_a_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        compile_model(build_model(BASE.model, 0))


# --------------------------------------------------------------------------- compiled runs
@pytest.fixture(scope="module")
def compiled_pair():
    """Two compiled runs of the same config, and how many steps went through the compiled model."""
    calls = {"n": 0}
    real = lt.compile_model

    def spy(model):
        fast = real(model)

        def counted(*a, **k):
            calls["n"] += 1
            return fast(*a, **k)
        return counted

    mp = pytest.MonkeyPatch()
    mp.setattr(lt, "compile_model", spy)
    try:
        cfg = BASE.replace(compile=True)
        first = lt.run(cfg, progress=False)[0]
        n_first = calls["n"]
        second = lt.run(cfg, progress=False)[0]
    finally:
        mp.undo()
    return first, second, n_first


def test_compiled_run_is_deterministic(compiled_pair):
    first, second, _ = compiled_pair
    assert first["status"] == "ok"
    for k in ("history", "spectra", "tangential", "final_singular_values"):
        assert first[k] == second[k], k


def test_only_full_batches_are_compiled(compiled_pair):
    # 30 steps = 6 epochs of (4 full + 1 short) batches: 24 compiled forward calls
    assert compiled_pair[2] == 24


def test_compiled_run_follows_the_eager_run(compiled_pair):
    comp = compiled_pair[0]["history"]
    eager = lt.run(BASE, progress=False)[0]["history"]
    assert comp["step"] == eager["step"]
    torch.testing.assert_close(torch.tensor(comp["train_loss"]), torch.tensor(eager["train_loss"]),
                               rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.tensor(comp["val_loss"]), torch.tensor(eager["val_loss"]),
                               rtol=1e-3, atol=1e-4)
