"""The strength search of notebook 04 (lrdlib.search), on synthetic run records: the grid, the
stage-B cap, the best-strength rule, edges and extensions, and the seeds of stage D."""
import math

import pytest

from lrdlib.runs.search import (
    Point,
    Search,
    Trial,
    best_trial,
    beyond,
    confirmation_points,
    confirmed_choice,
    edge_side,
    grid_indices,
    left_at_most,
    log_grid,
    multiplier,
    needs_confirmation,
    rank_key,
    runner_up,
    split_stages,
    stage_cap,
    strength_at,
    trial_from_record,
)

EVAL, HOLD, BUDGET = 100, 300, 20000


def record(seed, steps, grok_at=None, hold=HOLD, eval_every=EVAL, collapse_at=None, status="ok", max_acc=None,
           final_loss=1.0, plateau=0.5):
    """A run record as the training loop writes it: val acc ``plateau`` until ``grok_at``, then 1.0;
    the run stops once the hold window is complete (early stop) or at ``steps``. ``collapse_at``:
    the accuracy falls back to the plateau there (a grok that did not last)."""
    if status == "failed":
        return {"key": "x", "config": {"seed": seed, "steps": steps}, "status": "failed", "error": "boom"}
    xs, acc = [], []
    for s in range(0, steps + 1, eval_every):
        up = grok_at is not None and s >= grok_at and (collapse_at is None or s < collapse_at)
        xs.append(s)
        acc.append(1.0 if up else plateau)
        if up and collapse_at is None and s >= grok_at + hold:
            break
    if xs[-1] != steps and (grok_at is None or collapse_at is not None or xs[-1] < grok_at + hold):
        xs.append(steps)
        acc.append(acc[-1])
    return {"config": {"seed": seed, "steps": steps, "grok_threshold": 0.99, "grok_hold": hold},
            "status": status, "history": {"step": xs, "val_acc": acc, "val_loss": [final_loss] * len(xs)},
            "max_val_acc": max(acc) if max_acc is None else max_acc, "final_val_acc": acc[-1]}


def oracle(speed):
    """Records from a map strength -> steps-to-grok (None: never groks); same for every seed."""
    def rec(p: Point) -> dict:
        return record(p.seed, p.steps, speed(p.strength))
    return rec


def drive(search, rec, limit=20):
    """Run a search to the end with the synthetic ``rec``; return the stages' pending lists."""
    stages = []
    while not search.done and limit:
        stages.append(list(search.pending))
        search.update([(p, rec(p)) for p in search.pending])
        limit -= 1
    assert search.done, "search did not finish"
    return stages


# ---------------------------------------------------------------- the grid
def test_half_decade_series():
    assert [multiplier(k) for k in range(-3, 4)] == pytest.approx([0.03, 0.1, 0.3, 1, 3, 10, 30])
    # two steps are exactly a decade, one step is √10 rounded to one significant figure (3 or 10/3)
    for k in range(-6, 6):
        assert multiplier(k + 2) / multiplier(k) == pytest.approx(10)
        assert multiplier(k + 1) / multiplier(k) in (pytest.approx(3), pytest.approx(10 / 3))


def test_log_grid_centres():
    assert log_grid(1.0) == [0.1, 0.3, 1.0, 3.0, 10.0]
    assert log_grid(0.01) == [0.001, 0.003, 0.01, 0.03, 0.1]     # exact: no 0.0030000000000000005
    assert log_grid(0.5) == [0.05, 0.15, 0.5, 1.5, 5.0]
    assert log_grid(1.0, 3) == [0.3, 1.0, 3.0]
    assert strength_at(0.01, -3) == 0.0003
    with pytest.raises(ValueError, match="odd"):
        grid_indices(4)
    with pytest.raises(ValueError, match="positive"):
        strength_at(0.0, 1)


def test_split_stages():
    assert split_stages(grid_indices(5)) == ([-1, 0, 1], [-2, 2])
    assert split_stages(grid_indices(3)) == ([-1, 0, 1], [])
    assert split_stages(grid_indices(7)) == ([-1, 0, 1], [-3, -2, 2, 3])


def test_stage_cap():
    assert stage_cap(None, BUDGET, EVAL) == BUDGET                  # nothing grokked in A: full budget
    assert stage_cap(400, BUDGET, EVAL) == 2000                     # the floor
    assert stage_cap(900, BUDGET, EVAL) == 2700                     # 3 × best
    assert stage_cap(850, BUDGET, EVAL) == 2600                     # 2550 rounded up to an evaluation
    assert stage_cap(9000, BUDGET, EVAL) == BUDGET                  # never above the budget
    assert stage_cap(30, 80, 20, floor=2000) == 80                  # smoke: the floor exceeds the budget


def test_beyond_and_edges():
    assert beyond([-2, -1, 0, 1, 2], "low") == -3 and beyond([-2, 0, 3], "high") == 4
    with pytest.raises(ValueError):
        beyond([0], "middle")
    assert edge_side(0.1, [0.1, 1, 10]) == "low"
    assert edge_side(10, [0.1, 1, 10]) == "high"
    assert edge_side(1, [0.1, 1, 10]) is None


# ---------------------------------------------------------------- one run and the best of several
def trial(strength, time=None, loss=1.0, acc=0.5, status="ok", steps=BUDGET):
    ev = time is not None
    return Trial(strength, 0, steps, float(time if ev else steps), ev, loss, acc, 1.0 if ev else acc, False, status)


def test_best_rule():
    # fastest lasting grok wins, whatever the others' accuracy
    assert best_trial([trial(1, 900), trial(3, 700), trial(10, None, acc=0.98)]).strength == 3
    # equal steps: the smaller final validation loss
    assert best_trial([trial(1, 700, loss=0.2), trial(3, 700, loss=0.1)]).strength == 3
    # nothing grokked: the highest max validation accuracy, then the smaller loss
    assert best_trial([trial(1, None, acc=0.6), trial(3, None, acc=0.8), trial(10, None, acc=0.7)]).strength == 3
    assert best_trial([trial(1, None, acc=0.8, loss=0.4), trial(3, None, acc=0.8, loss=0.3)]).strength == 3
    # a diverged run ranks after every finished one, even one at lower accuracy; failed last
    assert best_trial([trial(1, None, acc=0.9, status="diverged"), trial(3, None, acc=0.2)]).strength == 3
    assert best_trial([trial(1, None, status="failed"), trial(3, None, acc=0.1, status="diverged")]).strength == 3
    # a full tie goes to the smaller strength
    assert best_trial([trial(3, 700), trial(1, 700)]).strength == 1
    assert rank_key(trial(1, 700)) < rank_key(trial(1, None, acc=1.0))
    with pytest.raises(ValueError):
        best_trial([])


def test_trial_from_record_lasting_collapse_and_cap():
    t = trial_from_record(record(0, BUDGET, grok_at=1200), 1.0)
    assert t.event and t.time == 1200 and t.steps == BUDGET and not t.collapsed
    # a grok that collapses is no grok: censored at the budget, counted as a collapse
    t = trial_from_record(record(0, 3000, grok_at=1200, collapse_at=1400), 1.0)
    assert not t.event and t.time == 3000 and t.collapsed
    # a run capped at 2000 that grokked at 1900: the hold window (300) is cut by the cap; the
    # record's own definition would count it (it held to its end), the search censors it at the cap
    capped = record(0, 2000, grok_at=1900)
    assert capped["history"]["step"][-1] == 2000
    assert not trial_from_record(capped, 1.0, "B", full_budget=BUDGET).event
    assert trial_from_record(capped, 1.0, "B", full_budget=BUDGET).time == 2000
    assert trial_from_record(capped, 1.0).event                     # at its own full budget it would count
    assert trial_from_record(record(0, 2000, grok_at=1500), 1.0, "B", full_budget=BUDGET).event   # window complete
    # never grokked / failed: censored at the run's budget
    assert trial_from_record(record(0, 2500), 1.0).time == 2500
    f = trial_from_record(record(0, 2500, status="failed"), 1.0)
    assert f.status == "failed" and not f.event


# ---------------------------------------------------------------- the search, end to end
def test_search_interior_best_caps_outer_and_reuses_seed0():
    speed = {0.1: None, 0.3: 1500, 1.0: 800, 3.0: 1100, 10.0: 5000}.get
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    stages = drive(s, oracle(speed))
    a, b, d = stages
    assert [(p.strength, p.steps, p.stage) for p in a] == [(0.3, BUDGET, "A"), (1.0, BUDGET, "A"), (3.0, BUDGET, "A")]
    assert [(p.strength, p.steps) for p in b] == [(0.1, 2400), (10.0, 2400)]    # 3 × 800
    assert s.best_strength == 1.0 and s.at_edge is None and s.extensions == 0
    # 10.0 would grok at 5000 > cap: censored at the cap, not at the budget
    assert {t.strength: (t.event, t.time) for t in s.searched()}[10.0] == (False, 2400)
    # stage D: seeds 1-4 only, seed 0's full-budget run is reused
    assert [(p.strength, p.seed, p.steps) for p in d] == [(1.0, k, BUDGET) for k in (1, 2, 3, 4)]
    assert [t.seed for t in s.final()] == [0, 1, 2, 3, 4]
    assert all(t.steps == BUDGET and t.strength == 1.0 for t in s.final())
    assert s.summary()["strengths"] == [0.1, 0.3, 1.0, 3.0, 10.0]


def test_search_best_in_capped_stage_b_reruns_seed0():
    speed = {0.1: None, 0.3: 1500, 1.0: 1200, 3.0: 1000, 10.0: 600, 30.0: 900}.get
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    stages = drive(s, oracle(speed))
    assert [p.steps for p in stages[1]] == [3000, 3000]
    # best at 10 (an outer strength, found under the cap): at the high edge -> one extension to 30, slower: stop
    assert [(p.strength, p.stage) for p in stages[2]] == [(30.0, "C")]
    assert s.best_strength == 10.0 and s.at_edge is None and s.extensions == 1
    d = stages[3]
    assert (10.0, 0, BUDGET) in [(p.strength, p.seed, p.steps) for p in d]       # capped seed-0 run rerun at full budget
    assert [t.seed for t in s.final()] == [0, 1, 2, 3, 4]
    assert all(t.steps == BUDGET for t in s.final())


def test_search_extends_at_most_twice_then_reports_edge():
    speed = lambda st: int(10000 / (1 + st))          # stronger is always faster
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0, 1])
    stages = drive(s, oracle(speed))
    ext = [p.strength for st in stages for p in st if p.stage == "C"]
    assert ext == [30.0, 100.0]
    assert s.extensions == 2 and s.best_strength == 100.0 and s.at_edge == "high"
    assert s.summary()["at_edge"] == "high"
    low = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0], max_extensions=1)
    drive(low, oracle(lambda st: int(500 + 3000 * st)))   # weaker is always faster
    assert low.strengths[0] == 0.03 and low.best_strength == 0.03 and low.at_edge == "low"


def test_search_without_grok_in_stage_a_runs_outer_at_full_budget():
    speed = {0.1: 9000, 0.3: None, 1.0: None, 3.0: None, 10.0: None}.get
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0])
    stages = drive(s, oracle(speed))
    assert [p.steps for p in stages[1]] == [BUDGET, BUDGET]
    # best at the low edge: one extension below it, which does not grok, puts it inside the range
    assert s.best_strength == 0.1 and s.at_edge is None
    assert s.extensions == 1 and [t.strength for t in s.searched()][:2] == [0.03, 0.1]


def test_search_small_grid_and_bad_update():
    s = Search(centre=0.5, budget=80, eval_every=20, seeds=[0, 1], n=3, max_extensions=0)
    assert [p.strength for p in s.pending] == [0.15, 0.5, 1.5]
    with pytest.raises(ValueError, match="expected results"):
        s.update([(s.pending[0], record(0, 80))])
    drive(s, oracle(lambda st: None))
    assert s.extensions == 0 and len(s.final()) == 2
    assert s.summary()["searched"][0]["time"] == 80


def test_trial_infinities_are_json_safe():
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0], n=3, max_extensions=0)
    drive(s, lambda p: record(p.seed, p.steps, None, final_loss=math.inf))
    assert all(r["final_val_loss"] is None for r in s.summary()["searched"])


def test_edge_verdict():
    from lrdlib.analysis.verdicts import CANNOT_TELL, DOES_NOT_HOLD, HOLDS, edge_verdict

    inside = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0])
    drive(inside, oracle({0.1: None, 0.3: 1500, 1.0: 800, 3.0: 1100, 10.0: None}.get))
    edge = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0], max_extensions=1)
    drive(edge, oracle(lambda st: int(10000 / (1 + st))))
    v = edge_verdict("L2", {0.5: inside})
    assert v.verdict == HOLDS and v.numbers["best_text"] == "0.5: 1 [0.1, 10]"
    v = edge_verdict("L2", {0.3: edge, 0.5: inside}, "wd λ")
    assert v.verdict == DOES_NOT_HOLD and v.numbers["at_edge"] == [{"frac": 0.3, "side": "high", "best": 30.0}]
    assert v.numbers["best_text"] == "0.3: 30 [0.1, 30]; 0.5: 1 [0.1, 10]" and v.numbers["extensions"] == {"0.3": 1, "0.5": 0}
    assert v.numbers["symbol"] == "wd λ"
    none = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0], n=3, max_extensions=0)
    drive(none, oracle(lambda st: None))
    v = edge_verdict("L2", {0.5: none})
    assert v.numbers["no_grok"] == [0.5] and v.numbers["extensions"] == {"0.5": 0}
    assert v.verdict == (DOES_NOT_HOLD if none.at_edge else CANNOT_TELL)
    inside_no_grok = Search(centre=1.0, budget=BUDGET, eval_every=EVAL, seeds=[0], n=3, max_extensions=0)
    drive(inside_no_grok, lambda p: record(p.seed, p.steps, None, plateau=0.9 if p.strength == 1.0 else 0.5))
    assert inside_no_grok.at_edge is None
    assert edge_verdict("L2", {0.5: inside_no_grok, 0.6: inside}).verdict == CANNOT_TELL


@pytest.mark.parametrize("speed", [
    {0.1: None, 0.3: 1500, 1.0: 800, 3.0: 1100, 10.0: 5000}.get,                 # interior best, no extension
    {0.1: None, 0.3: 1500, 1.0: 1200, 3.0: 1000, 10.0: 600, 30.0: 900}.get,      # capped best, one extension
    lambda st: int(10000 / (1 + st)),                                              # two extensions, still at the edge
    lambda st: None,                                                               # nothing groks
])
def test_left_at_most_bounds_what_the_search_still_runs(speed):
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    bounds = [s.left_at_most()]
    stages = []
    while not s.done:
        stages.append(list(s.pending))
        s.update([(p, oracle(speed)(p)) for p in s.pending])
        bounds.append(s.left_at_most())
    assert bounds[-1] == (0, 0)
    for i, (runs, steps) in enumerate(bounds[:-1]):
        rest = [p for st in stages[i:] for p in st]
        assert runs >= len(rest) and steps >= sum(p.steps for p in rest)
        assert runs <= 5 + 2 + 5               # the grid, the extensions, the seeds
    assert bounds[0] == (12, 12 * BUDGET)      # a new search: nothing known yet
    assert left_at_most([s, Search(centre=1.0, budget=BUDGET, eval_every=EVAL)]) == (12, 12 * BUDGET)


# ---------------------------------------------------------------- stage E: confirming the reference arm
def lucky_seed_zero(p: Point) -> dict:
    """λ = 3 groks fast on the search seed only; λ = 1 groks on every seed, slower; 0.3 groks late
    under the stage-B cap's budget; the rest never."""
    at = {3.0: 1200 if p.seed == 0 else None, 1.0: 3100, 0.3: 6600}.get(p.strength)
    return record(p.seed, p.steps, at)


def test_stage_e_runs_the_runner_up_when_the_best_fails_on_most_seeds():
    s = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    drive(s, lucky_seed_zero)
    assert s.best_strength == 3.0 and sum(t.event for t in s.final()) == 1
    assert needs_confirmation(s) and not needs_confirmation(s, level=0.2)
    assert runner_up(s).strength == 1.0                      # faster than 0.3 on the search seed
    pts = confirmation_points(s)
    # every seed at the full budget: seed 0's full-budget stage-A run at λ = 1 has the same config (a cache hit)
    assert [(p.strength, p.seed, p.steps, p.stage) for p in pts] == [(1.0, k, BUDGET, "E") for k in range(5)]
    runner = [trial_from_record(lucky_seed_zero(p), p.strength, "E", BUDGET) for p in pts]
    assert confirmed_choice(s.final(), runner) == "runner-up"
    assert confirmed_choice(s.final(), runner[:1]) == "best"  # 1 vs 1 seed: a tie keeps the best
    assert confirmed_choice(s.final(), []) == "best"


def test_stage_e_not_needed_or_not_possible():
    ok = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    drive(ok, oracle({0.3: 1500, 1.0: 800, 3.0: 1100}.get))
    assert not needs_confirmation(ok) and confirmation_points(ok) == []
    lone = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)   # only λ = 3 on seed 0 groks: no runner-up
    drive(lone, lambda p: record(p.seed, p.steps, 1200 if (p.strength == 3.0 and p.seed == 0) else None))
    assert needs_confirmation(lone) and runner_up(lone) is None and confirmation_points(lone) == []
    fresh = Search(centre=1.0, budget=BUDGET, eval_every=EVAL)
    with pytest.raises(ValueError, match="stage A"):
        runner_up(fresh)
    with pytest.raises(ValueError, match="expected done"):
        needs_confirmation(fresh)
    with pytest.raises(ValueError, match="level=0"):
        needs_confirmation(ok, level=0)
    with pytest.raises(ValueError, match="trials"):
        confirmed_choice([], [])
