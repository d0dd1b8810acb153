"""lrdlib.runs.cache (records and weights on disk) and lrdlib.config (RunConfig: validation,
dict round trip, key, replace, seed presets)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lrdlib.core.config import METHODS, RECORD_VERSION, SEED_STRENGTH, RunConfig, seed_config
from lrdlib.core.data import TaskConfig
from lrdlib.core.decay import DecayConfig
from lrdlib.core.model import ModelConfig
from lrdlib.core.optim import OptimConfig
from lrdlib.runs import cache as cache_mod
from lrdlib.runs import files as files_mod
from lrdlib.runs.cache import RunCache, strict_json
from lrdlib.runs.store import CorruptRecord

SMALL = RunConfig(task=TaskConfig(p=23), model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                  steps=60, eval_every=20)


def _record(cfg, **extra):
    return {"key": cfg.key(), "config": cfg.to_dict(), "status": "ok", "history": {"val_acc": [0.1, 0.5]},
            "x": float("nan"), **extra}


# --------------------------------------------------------------------------- cache
def test_save_load_roundtrip(tmp_path):
    c = RunCache(tmp_path)
    assert c.load(SMALL) is None and c.load_weights(SMALL) is None
    state = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    rec = _record(SMALL)
    c.save(SMALL, rec, state)
    assert c.record_path(SMALL) == tmp_path / f"{SMALL.key()}.json"
    assert c.weights_path(SMALL) == tmp_path / f"{SMALL.key()}.safetensors"
    got = c.load(SMALL)
    assert got["key"] == rec["key"] and got["history"] == rec["history"] and got["x"] is None  # NaN -> null
    w = c.load_weights(SMALL)
    assert set(w) == {"a", "b"} and torch.equal(w["a"], state["a"]) and torch.equal(w["b"], state["b"])
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{SMALL.key()}.json",
                                                                 f"{SMALL.key()}.safetensors"])


def test_save_without_state_and_overwrite(tmp_path):
    c = RunCache(tmp_path / "nested" / "dir")  # created on demand
    c.save(SMALL, _record(SMALL, n=1))
    assert c.load(SMALL)["n"] == 1 and c.load_weights(SMALL) is None
    c.save(SMALL, _record(SMALL, n=2))
    assert c.load(SMALL)["n"] == 2


def test_different_config_different_key_and_no_hit(tmp_path):
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL))
    others = [SMALL.replace(seed=1), SMALL.replace(task__split_seed=1), SMALL.replace(decay=DecayConfig("l2", 0.1)),
              SMALL.replace(optim__lr=2e-3), SMALL.replace(model__qk_norm=False), SMALL.replace(steps=61),
              SMALL.replace(targets=("q_proj",))]
    keys = {SMALL.key(), *(o.key() for o in others)}
    assert len(keys) == len(others) + 1
    for o in others:
        assert c.load(o) is None


def test_record_with_wrong_key_is_an_error(tmp_path):
    c = RunCache(tmp_path)
    c.save(SMALL, {"key": "somethingelse", "config": SMALL.to_dict(), "status": "ok"})
    with pytest.raises(CorruptRecord, match=SMALL.key()):
        c.load(SMALL)
    c.save(SMALL, {"status": "ok"})  # no key at all
    with pytest.raises(CorruptRecord, match="not a run record"):
        c.load(SMALL)


@pytest.mark.parametrize("content", [
    b"", b'{"key": "', b"{", b"not json at all", b'{"key": "x", "status": "ok"',
    b"\xff\xfe\x00\x81garbage",
    b"[1, 2, 3]",
], ids=["empty", "truncated-string", "open-brace", "text", "truncated-object", "binary", "json-list"])
def test_corrupt_record_is_an_error_naming_the_file(tmp_path, content):
    c = RunCache(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    c.record_path(SMALL).write_bytes(content)
    with pytest.raises(CorruptRecord, match=c.record_path(SMALL).name):
        c.load(SMALL)


def test_truncated_real_record_is_an_error(tmp_path):
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL))
    text = c.record_path(SMALL).read_text()
    c.record_path(SMALL).write_text(text[: len(text) // 2])
    with pytest.raises(CorruptRecord, match="cannot be read"):
        c.load(SMALL)


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def failing(tmp):
        Path(tmp).write_text("half-writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache_mod.atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # temporary file removed
    cache_mod.atomic_write(target, lambda t: Path(t).write_text("new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_save_record_failure_keeps_previous_record(tmp_path, monkeypatch):
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL, n=1))

    def boom(*a, **k):
        raise OSError("killed")

    monkeypatch.setattr(files_mod.os, "replace", boom)
    with pytest.raises(OSError):
        c.save(SMALL, _record(SMALL, n=2))
    monkeypatch.undo()
    assert c.load(SMALL)["n"] == 1
    assert {p.name for p in tmp_path.iterdir()} == {f"{SMALL.key()}.json"}


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "env-cache"))
    c = RunCache()
    assert c.root == tmp_path / "env-cache"
    c.save(SMALL, _record(SMALL))
    assert (tmp_path / "env-cache" / f"{SMALL.key()}.json").exists()


def test_key_stable_across_processes():
    code = ("from lrdlib.core.config import seed_config; "
            "print(seed_config('LRD').key()); print(seed_config('Luon', 0.3, train_frac=0.3, p=97).key())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == [seed_config("LRD").key(), seed_config("Luon", 0.3, train_frac=0.3, p=97).key()]


def test_key_format_and_record_version(monkeypatch):
    k = SMALL.key()
    assert re.fullmatch(r"[0-9a-f]{20}", k)
    assert SMALL.key() == k and RunConfig.from_dict(SMALL.to_dict()).key() == k
    from lrdlib.core import config
    monkeypatch.setattr(config, "RECORD_VERSION", RECORD_VERSION + 1)
    assert SMALL.key() != k


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw,needle", [
    (dict(model=ModelConfig(vocab_size=114)), "vocab_size=114"),   # task p=23 needs 24
    (dict(steps=0), "steps=0"), (dict(steps=-5), "steps=-5"), (dict(steps=2.0), "steps=2.0"),
    (dict(steps="10"), "steps='10'"),
    (dict(batch_size=0), "batch_size=0"), (dict(eval_every=True), "eval_every=True"),
    (dict(seed=-1), "seed=-1"), (dict(grok_threshold=0.0), "grok_threshold=0.0"),
    (dict(grok_threshold=1.5), "grok_threshold=1.5"),
    (dict(device="gpu"), "device='gpu'"), (dict(device="mps"), "device='mps'"),
])
def test_run_config_validation(kw, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        SMALL.replace(**kw)


def test_run_config_good_devices():
    for d in ("cpu", "cuda", "cuda:1"):
        assert SMALL.replace(device=d).device == d


def test_vocab_mismatch_message_names_the_needed_size():
    with pytest.raises(ValueError, match=re.escape("vocab_size=98")):
        RunConfig(task=TaskConfig(p=97), model=ModelConfig(vocab_size=114))


@pytest.mark.parametrize("cfg", [
    SMALL, RunConfig(), seed_config("L2"), seed_config("LRD", 0.01, train_frac=0.3),
    seed_config("Luon", p=97, steps=100, early_stop=True),
    SMALL.replace(decay=DecayConfig("lowrank", 0.0, rank=3, every=10), targets=("q_proj",),
                  optim=OptimConfig(kind="muon", betas=(0.8, 0.99))),
], ids=["small", "default", "L2", "LRD", "Luon", "lowrank-muon"])
def test_to_dict_from_dict_roundtrip(cfg):
    d = cfg.to_dict()
    assert RunConfig.from_dict(d) == cfg
    via_json = RunConfig.from_dict(json.loads(json.dumps(d)))  # lists instead of tuples
    assert via_json == cfg and via_json.key() == cfg.key()
    assert isinstance(via_json.targets, tuple) and isinstance(via_json.optim.betas, tuple)
    assert d["task"]["p"] == cfg.task.p and d["decay"]["kind"] == cfg.decay.kind


def test_replace_nested_and_top_level():
    c = SMALL.replace(task__train_frac=0.3, seed=4, optim__lr=5e-4, optim__weight_decay=0.0)
    assert c.task.train_frac == 0.3 and c.task.p == 23 and c.task.op == "add"
    assert c.seed == 4 and c.optim.lr == 5e-4 and c.optim.weight_decay == 0.0
    assert c.optim.betas == SMALL.optim.betas and c.model == SMALL.model
    assert SMALL.task.train_frac == 0.5 and SMALL.seed == 0  # the original is untouched
    # nested changes on top of a replaced sub-config
    c2 = SMALL.replace(decay=DecayConfig("l2", 0.1), decay__every=5)
    assert c2.decay == DecayConfig("l2", 0.1, every=5)
    # both sides of a coupled constraint at once
    c3 = SMALL.replace(task__p=97, model__vocab_size=98)
    assert c3.task.vocab_size == c3.model.vocab_size == 98
    # validation runs on the nested dataclass and on the whole
    with pytest.raises(ValueError, match=re.escape("train_frac=1.5")):
        SMALL.replace(task__train_frac=1.5)
    with pytest.raises(ValueError, match=re.escape("vocab_size=24")):
        SMALL.replace(task__p=97)
    with pytest.raises(TypeError):
        SMALL.replace(task__nonexistent=1)


def test_seed_config_presets():
    l2, lrd, luon = (seed_config(m) for m in METHODS)
    for c in (l2, lrd, luon):
        assert c.task == TaskConfig("add", 113, 0.5, 0) and c.model == ModelConfig() and c.steps == 4000
        assert c.targets == ("q_proj", "k_proj")
    assert l2.optim.kind == "adamw" and l2.optim.weight_decay == l2.optim.target_weight_decay == 0.1
    assert l2.decay.kind == "none"
    assert lrd.optim.kind == "adamw" and (lrd.optim.weight_decay, lrd.optim.target_weight_decay) == (0.1, 0.0)
    assert lrd.decay == DecayConfig("lrd_ns", 0.005)
    assert luon.optim.kind == "luon" and luon.optim.weight_decay == 0.0 and luon.optim.luon_lambda == 0.5
    assert luon.optim.muon_lr == 0.02 and luon.optim.momentum == 0.95 and luon.decay.kind == "none"
    assert SEED_STRENGTH == {"L2": 0.1, "LRD": 0.005, "Luon": 0.5}
    s = seed_config("LRD", 0.02, train_frac=0.3, seed=7, steps=10, op="mul", p=97, eval_every=5)
    assert s.decay.strength == 0.02 and s.seed == 7 and s.task.split_seed == 7 and s.task.op == "mul"
    assert s.model.vocab_size == 98 and s.eval_every == 5 and s.task.train_frac == 0.3
    assert len({c.key() for c in (l2, lrd, luon, s)}) == 4
    with pytest.raises(ValueError, match=re.escape("method='SGD'")):
        seed_config("SGD")


# --------------------------------------------------------------------------- hardening (issue 10)
def test_changing_a_default_cannot_return_a_stale_record(tmp_path):
    """The key hashes the whole config, defaults included (so a default's value is in the key),
    and ``load`` returns a record only if its stored config equals the requested one: a record
    made when ``steps`` had another default can never come back for today's default."""
    from lrdlib.core import config

    blob = json.dumps({"v": config.RECORD_VERSION, "cfg": RunConfig().to_dict()}, sort_keys=True)
    assert RunConfig().key() == config.hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert '"steps": 4000' in blob
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL))
    # a record whose key matches but whose stored config differs (an old default) is refused
    other = SMALL.replace(seed=5)
    c.record_path(other).write_text(json.dumps({**_record(SMALL), "key": other.key()}))
    with pytest.raises(CorruptRecord, match=other.key()):
        c.load(other)


@pytest.mark.parametrize("a,b", [
    (dict(decay=DecayConfig("lrd_ns", 1)), dict(decay=DecayConfig("lrd_ns", 1.0))),
    (dict(early_stop=1), dict(early_stop=True)),
    (dict(optim__lr=1), dict(optim__lr=1.0)),
    (dict(seed=np.int64(3)), dict(seed=3)),
    (dict(task__train_frac=np.float32(0.5)), dict(task__train_frac=0.5)),
    (dict(targets=["q_proj", "k_proj"]), dict(targets=("q_proj", "k_proj"))),
], ids=["strength-int", "early-stop-int", "lr-int", "numpy-seed", "numpy-frac", "list-targets"])
def test_equal_configs_share_one_key(a, b):
    x, y = SMALL.replace(**a), SMALL.replace(**b)
    assert x == y and x.key() == y.key() and hash(x) == hash(y)


@pytest.mark.parametrize("kw,needle", [
    (dict(seed=True), "seed=True"), (dict(seed=2 ** 70), "seed="), (dict(device="cudafoo"), "device='cudafoo'"),
    (dict(device=0), "device=0"), (dict(targets=()), "targets=()"), (dict(targets="q_proj"), "targets='q_proj'"),
    (dict(targets=("q_proj", "fc_in")), "different shapes"), (dict(targets=("nothing",)), "match no 2-D"),
    (dict(grok_threshold="0.9"), "grok_threshold='0.9'"), (dict(optim__momentum="0.9"), "momentum='0.9'"),
    (dict(optim__betas=(0.9,)), "betas"), (dict(optim__betas=(0.9, 1.5)), "betas"),
    (dict(optim__eps=0.0), "eps=0.0"), (dict(optim__ns_steps=-1), "ns_steps=-1"),
    (dict(decay__strength=float("nan")), "strength=nan"),
], ids=lambda v: str(v)[:30])
def test_bad_fields_are_rejected_at_construction_naming_the_field(kw, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        SMALL.replace(**kw)


def test_cache_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        c = RunCache(tmp_path)
        c.save(SMALL, _record(SMALL), {"a": torch.zeros(2)})
    finally:
        os.umask(old)
    for p in (c.record_path(SMALL), c.weights_path(SMALL)):
        assert p.stat().st_mode & 0o777 == 0o644, oct(p.stat().st_mode)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = cache_mod._HOST
    stale = tmp_path / f".abc.json.{host}.{dead}.x1y2.tmp"
    live = tmp_path / f".abc.json.{host}.{os.getpid()}.x1y2.tmp"
    foreign = tmp_path / f".abc.json.otherhost.{dead}.x1y2.tmp"
    for p in (stale, live, foreign):
        p.write_text("half")
    RunCache(tmp_path)
    assert not stale.exists() and live.exists() and foreign.exists()


def test_diverged_record_is_strict_json(tmp_path):
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL, h=[1.0, float("nan"), float("inf")]))
    text = c.record_path(SMALL).read_text()
    json.loads(text, parse_constant=lambda s: pytest.fail(f"non-standard JSON constant {s}"))
    assert c.load(SMALL)["h"] == [1.0, None, None]


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None], ids=["empty", "garbage", "truncated"])
def test_unreadable_weights_count_as_absent(tmp_path, content):
    c = RunCache(tmp_path)
    c.save(SMALL, _record(SMALL), {"a": torch.randn(50, 50)})
    data = c.weights_path(SMALL).read_bytes()
    c.weights_path(SMALL).write_bytes(data[: len(data) // 2] if content is None else content)
    assert c.load_weights(SMALL) is None


def test_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions
        ro.chmod(0o700)
        (tmp_path / "file").write_text("x")
        ro = tmp_path / "file" / "sub"          # a path under a regular file is never writable
    monkeypatch.setattr(cache_mod, "run", lambda *a, **k: pytest.fail("trained before checking the cache"))
    with pytest.raises(ValueError, match="not writable"):
        cache_mod.train(SMALL, cache=RunCache(ro))


def test_strict_json_takes_numpy_scalars_tuples_and_odd_keys():
    data = {"f": np.float32(0.5), "nan": np.float64("nan"), "inf": -np.inf, "i": np.int64(3), "b": np.bool_(True),
            "t": (1.0, float("nan")), ("a", 1): 2, np.int64(7): "seven", 0.5: [np.float32("inf")]}
    out = strict_json(data)
    assert out == {"f": 0.5, "nan": None, "inf": None, "i": 3, "b": True, "t": [1.0, None], "('a', 1)": 2,
                   "7": "seven", 0.5: [None]}
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["f"]) is float
    json.loads(json.dumps(out, allow_nan=False))   # accepted by a strict writer
