"""lrdlib.data: labels, splits, validation, commutativity ceiling."""
import re

import pytest
import torch

from lrdlib.data import OPS, Split, TaskConfig, all_pairs, commutativity_ceiling, make_split

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
