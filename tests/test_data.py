"""lrdlib.data: labels, splits, validation, commutativity ceiling."""
import re

import pytest
import torch

from lrdlib.core.data import (
    OPS,
    RECALL_DATA_SEED,
    Split,
    TaskConfig,
    all_pairs,
    commutativity_ceiling,
    make_split,
    recall_count,
    recall_sequences,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _py_inverse(b: int, p: int) -> int:
    """Multiplicative inverse by brute force (independent of Fermat)."""
    (inv,) = [c for c in range(1, p) if (b * c) % p == 1]
    return inv


def _py_label(op: str, a: int, b: int, p: int) -> int:
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    if op == "div":
        return (a * _py_inverse(b, p)) % p
    if op == "quad":
        return (a * a + a * b + b * b) % p
    raise AssertionError(op)


def _py_table(op: str, p: int) -> dict[tuple[int, int], int]:
    return {(a, b): _py_label(op, a, b, p) for a in range(p) for b in range(p) if not (op == "div" and b == 0)}


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[int, int, int, int]]:
    return [tuple(r) + (l,) for r, l in zip(x.tolist(), y.tolist())]


@pytest.mark.parametrize("p", [7, 11])
@pytest.mark.parametrize("op", OPS)
def test_all_pairs_labels_match_pure_python(op, p):
    x, y = all_pairs(op, p)
    ref = _py_table(op, p)
    assert x.shape == (len(ref), 3) and y.shape == (len(ref),)
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    assert (x[:, 2] == p).all(), "the third token must be '=' (token id p)"
    got = {(a, b): l for a, b, _, l in _rows(x, y)}
    assert len(got) == len(ref), "duplicate pairs"
    assert got == ref


def test_div_excludes_zero_divisor_and_inverts():
    x, y = all_pairs("div", 7)
    assert len(y) == 7 * 6
    assert (x[:, 1] != 0).all()
    # a / b * b == a (mod p) for every row
    assert ((y * x[:, 1]) % 7 == x[:, 0]).all()


def test_sub_is_not_commutative_and_add_is():
    t_sub, t_add = _py_table("sub", 7), _py_table("add", 7)
    x, y = all_pairs("sub", 7)
    got = {(a, b): l for a, b, _, l in _rows(x, y)}
    assert got[(2, 5)] == (2 - 5) % 7 == 4 and got[(5, 2)] == 3
    assert got == t_sub and t_add[(2, 5)] == t_add[(5, 2)]


@pytest.mark.parametrize("op,p,frac,n_train,n_val", [
    ("add", 11, 0.5, 60, 61),    # 121 pairs, int(60.5) = 60
    ("add", 11, 0.3, 36, 85),    # int(36.3) = 36
    ("mul", 7, 0.9, 44, 5),      # int(44.1) = 44
    ("div", 7, 0.5, 21, 21),     # 42 pairs (b != 0)
    ("sub", 13, 0.25, 42, 127),  # int(42.25) = 42
])
def test_split_sizes(op, p, frac, n_train, n_val):
    s = make_split(TaskConfig(op=op, p=p, train_frac=frac, split_seed=3))
    assert s.x_train.shape == (n_train, 3) and s.y_train.shape == (n_train,)
    assert s.x_val.shape == (n_val, 3) and s.y_val.shape == (n_val,)


@pytest.mark.parametrize("op", OPS)
def test_split_disjoint_covering_and_labelled(op):
    p = 11
    s = make_split(TaskConfig(op=op, p=p, train_frac=0.4, split_seed=1))
    tr = _rows(s.x_train, s.y_train)
    va = _rows(s.x_val, s.y_val)
    tr_pairs = {(a, b) for a, b, _, _ in tr}
    va_pairs = {(a, b) for a, b, _, _ in va}
    assert len(tr_pairs) == len(tr) and len(va_pairs) == len(va), "duplicates inside a split"
    assert not tr_pairs & va_pairs
    ref = _py_table(op, p)
    assert tr_pairs | va_pairs == set(ref)
    assert all(l == ref[(a, b)] and eq == p for a, b, eq, l in tr + va)


def test_split_deterministic_for_same_seed_and_different_for_another():
    cfg = TaskConfig(op="add", p=11, train_frac=0.5, split_seed=5)
    s1, s2 = make_split(cfg), make_split(TaskConfig(op="add", p=11, train_frac=0.5, split_seed=5))
    for a, b in zip((s1.x_train, s1.y_train, s1.x_val, s1.y_val), (s2.x_train, s2.y_train, s2.x_val, s2.y_val)):
        assert torch.equal(a, b)
    s3 = make_split(TaskConfig(op="add", p=11, train_frac=0.5, split_seed=6))
    assert {tuple(r) for r in s1.x_train.tolist()} != {tuple(r) for r in s3.x_train.tolist()}


def test_split_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    make_split(TaskConfig(p=11))
    assert torch.equal(torch.rand(4), expected)


def test_split_to_device_keeps_content():
    s = make_split(TaskConfig(p=7))
    t = s.to("cpu")
    assert isinstance(t, Split)
    assert torch.equal(t.x_val, s.x_val) and torch.equal(t.y_train, s.y_train)


@pytest.mark.parametrize("p", [9, 1, 0, -7, 4.0, 15, True])
def test_bad_p_raises_naming_value(p):
    with pytest.raises(ValueError, match=re.escape(f"p={p!r}")):
        TaskConfig(p=p)


@pytest.mark.parametrize("frac", [0, 1, -0.1, 1.5, 0.0, 1.0])
def test_bad_train_frac_raises_naming_value(frac):
    with pytest.raises(ValueError, match=re.escape(f"train_frac={frac!r}")):
        TaskConfig(p=7, train_frac=frac)


def test_train_frac_leaving_empty_train_set_raises():
    # 49 pairs, int(49 * 0.01) = 0 training pairs
    with pytest.raises(ValueError, match=re.escape("train_frac=0.01")):
        TaskConfig(p=7, train_frac=0.01)


@pytest.mark.parametrize("op", ["pow", "ADD", "", "mod"])
def test_bad_op_raises_naming_value(op):
    with pytest.raises(ValueError, match=re.escape(f"op={op!r}")):
        TaskConfig(op=op, p=7)
    with pytest.raises(ValueError, match=re.escape(f"op={op!r}")):
        all_pairs(op, 7)


def test_good_primes_accepted():
    for p in (2, 3, 5, 97, 113):
        assert TaskConfig(p=p).vocab_size == p + 1


def _split_from_pairs(p, train, val):
    def mk(pairs):
        x = torch.tensor([[a, b, p] for a, b in pairs], dtype=torch.long).reshape(-1, 3)
        y = torch.tensor([(a + b) % p for a, b in pairs], dtype=torch.long)
        return x, y
    return Split(*mk(train), *mk(val))


def test_commutativity_ceiling_hand_case():
    p = 3
    train = [(0, 1), (1, 2), (2, 2)]
    # swaps: (1,0)->(0,1) yes, (2,1)->(1,2) yes, (0,0)->(0,0) no, (0,2)->(2,0) no
    val = [(1, 0), (2, 1), (0, 0), (0, 2)]
    assert commutativity_ceiling(_split_from_pairs(p, train, val)) == pytest.approx(0.5, abs=0)
    # with (2, 0) in train, (0, 2) hits too
    assert commutativity_ceiling(_split_from_pairs(p, train + [(2, 0)], val)) == pytest.approx(3 / 4, abs=0)


def test_commutativity_ceiling_empty_val_is_zero():
    s = _split_from_pairs(5, [(0, 1)], [])
    assert commutativity_ceiling(s) == 0.0


def test_commutativity_ceiling_brute_force_on_real_split():
    p = 11
    s = make_split(TaskConfig(op="add", p=p, train_frac=0.5, split_seed=2))
    train = {(a, b) for a, b, _ in s.x_train.tolist()}
    val = [(a, b) for a, b, _ in s.x_val.tolist()]
    expected = sum((b, a) in train for a, b in val) / len(val)
    got = commutativity_ceiling(s)
    assert got == pytest.approx(expected, abs=1e-15)
    assert 0.3 < got < 0.7  # ~ train_frac for a random split


# --------------------------------------------------------------------------- a² + ab + b²
def test_quad_hand_values():
    x, y = all_pairs("quad", 7)
    got = {(a, b): l for a, b, _, l in _rows(x, y)}
    assert got[(2, 3)] == (4 + 6 + 9) % 7 == 5 and got[(3, 2)] == 5     # symmetric in a, b
    assert got[(0, 5)] == 25 % 7 == 4 and got[(6, 6)] == (3 * 36) % 7 == 3


# --------------------------------------------------------------------------- recall: [k1 v1 ... kn vn q] -> v(q)
RECALL = dict(op="recall", p=11, pairs=3, samples=400)


def _py_recall_answer(row: list[int]) -> int:
    *kv, q = row
    table = dict(zip(kv[0::2], kv[1::2]))
    assert len(table) == len(kv) // 2, "keys of a sequence must be distinct"
    return table[q]


def test_recall_answer_is_the_value_paired_with_the_query():
    x, y = recall_sequences(11, 3, 400)
    assert x.shape == (400, 7) and y.shape == (400,) and x.dtype == y.dtype == torch.int64
    assert int(x.max()) < 11 and int(x.min()) >= 0, "symbols 0..p-1 only (token p is not used)"
    assert [_py_recall_answer(r) for r in x.tolist()] == y.tolist()
    # the query sits at every key position somewhere, and the answer is not always the last value
    pos = [(r[0:-1:2]).index(r[-1]) for r in x.tolist()]
    assert set(pos) == {0, 1, 2}
    assert (y != x[:, -2]).any()


def test_recall_sequences_distinct_and_deterministic():
    x1, y1 = recall_sequences(11, 3, 400)
    x2, y2 = recall_sequences(11, 3, 400, seed=RECALL_DATA_SEED)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len({tuple(r) for r in x1.tolist()}) == 400, "duplicate sequences"
    x3, _ = recall_sequences(11, 3, 400, seed=RECALL_DATA_SEED + 1)
    assert not torch.equal(x1, x3)
    # a tiny space forces the de-duplication path: p=3, 1 pair has 3·3·1 = 9 sequences; 4 ≤ 9 // 2
    x4, _ = recall_sequences(3, 1, 4)
    assert len({tuple(r) for r in x4.tolist()}) == 4


def test_recall_split_deterministic_disjoint_no_leakage():
    cfg = TaskConfig(**RECALL, train_frac=0.3, split_seed=4)
    s1, s2 = make_split(cfg), make_split(TaskConfig(**RECALL, train_frac=0.3, split_seed=4))
    for a, b in zip((s1.x_train, s1.y_train, s1.x_val, s1.y_val), (s2.x_train, s2.y_train, s2.x_val, s2.y_val)):
        assert torch.equal(a, b)
    assert len(s1.y_train) == 120 and len(s1.y_val) == 280 and s1.x_train.shape[1] == cfg.seq_len == 7
    train = {tuple(r) for r in s1.x_train.tolist()}
    val = {tuple(r) for r in s1.x_val.tolist()}
    assert not train & val, "a validation sequence also in training"
    assert train | val == {tuple(r) for r in recall_sequences(11, 3, 400)[0].tolist()}
    s3 = make_split(TaskConfig(**RECALL, train_frac=0.3, split_seed=5))
    assert {tuple(r) for r in s3.x_train.tolist()} != train
    assert [_py_recall_answer(r) for r in s1.x_val.tolist()] == s1.y_val.tolist()


def test_recall_does_not_touch_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    make_split(TaskConfig(**RECALL))
    assert torch.equal(torch.rand(3), expected)


def test_recall_count():
    assert recall_count(3, 1) == 9 and recall_count(4, 2) == 4 * 3 * 16 * 2


@pytest.mark.parametrize("kw,bad", [
    (dict(pairs=0), "pairs=0"), (dict(pairs=-2), "pairs=-2"), (dict(p=2, pairs=3), "p=2"), (dict(p=1, pairs=1), "p=1"),
    (dict(samples=1), "samples=1"), (dict(samples=0), "samples=0"),
    (dict(p=3, pairs=1, samples=5), "samples=5"),          # 9 sequences exist: at most 4
    (dict(samples=2, train_frac=0.4), "train_frac=0.4"),    # int(0.8) = 0 training sequences
])
def test_recall_bad_parameters_name_the_value(kw, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        TaskConfig(**{**RECALL, **kw})


@pytest.mark.parametrize("kw,bad", [(dict(pairs=2), "pairs=2"), (dict(samples=10), "samples=10")])
def test_pair_tasks_reject_sequence_fields(kw, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        TaskConfig(op="add", p=7, **kw)


def test_task_dict_leaves_out_sequence_fields_of_pair_tasks():
    assert TaskConfig(p=7).to_dict() == {"op": "add", "p": 7, "train_frac": 0.5, "split_seed": 0}
    d = TaskConfig(**RECALL).to_dict()
    assert d["pairs"] == 3 and d["samples"] == 400
    assert TaskConfig(**d) == TaskConfig(**RECALL)
