"""When a run has grokked, read from its history: the first grok and the lasting one.

``steps_to_grok`` is the training loop's rule (validation accuracy ≥ the threshold at a step and
held for ``hold`` steps); ``outcome`` is the rule every chapter reports (a lasting grok, with
collapses after the first grok reported as such). Both are pure functions of a record.
"""
from __future__ import annotations

import math

# HOLD_LONG: steps a grok must hold for the protocol's sensitivity endpoint ``hold5k`` (amendment A2)
HOLD_LONG = 5000


def steps_to_grok(steps: list[int], val_acc: list[float], threshold: float = 0.99, hold: int = 0,
                  floor: float | None = None) -> int | None:
    """The first evaluation step s with val acc ≥ threshold at s and ≥ ``floor`` (default: the
    threshold) at every evaluation up to s + ``hold`` (``hold`` = 0: at s and the next evaluation).
    A run whose history ends inside the window counts if the accuracy held to its end (at least
    two evaluations). None if never."""
    lo = threshold if floor is None else floor
    if lo > threshold:
        raise ValueError(f"floor={floor!r} is above threshold={threshold!r}: expected floor ≤ threshold")
    for i in range(len(val_acc) - 1):
        if val_acc[i] < threshold:
            continue
        j = i + 1
        while j < len(val_acc) and val_acc[j] >= lo and steps[j] < steps[i] + hold:
            j += 1
        if j == len(val_acc) or val_acc[j] >= lo:
            return steps[i]
    return None


def grok_window_complete(steps: list[int], grok: int | None, hold: int) -> bool:
    """Whether the history reaches ``grok`` + ``hold`` (so an early stop loses nothing of the definition)."""
    return grok is not None and steps[-1] >= grok + hold and len(steps) >= 2


# The stated window of a lasting grok for runs trained without ``grok_hold`` (the seed runs): the
# same 1000 steps as the paper budget's hold (``lrdlib.runs.profiles.grok_budget``). "Held to the end of
# the run" is stricter than it sounds with evaluations every 50 steps: at paper, seed LRD runs that
# end at 100 % validation accuracy dip below 0.99 at single evaluations long after their first grok.
DEFAULT_HOLD = 1000
# The floor a lasting grok must not fall below inside its window. Requiring ≥ 0.99 at every
# evaluation (the floor = the threshold) restarts the window at every single-evaluation dip to
# 0.98: at paper the seed LRD runs' lasting groks then sit 500-2000 steps after groks that never
# fell below 0.9 again. A fall below 0.9 is a collapse, not rounding noise; training's early stop
# (``grok_hold``) keeps the strict rule, which stops later, so the history always covers this window.
DEFAULT_FLOOR = 0.9


def outcome(record: dict, threshold: float | None = None, hold: int | None = None,
            floor: float | None = None) -> dict:
    """One run: ``time`` (steps to a lasting grok, else its last step), ``event`` (grokked),
    ``collapsed`` (val acc reached the threshold at two evaluations in a row, then fell below
    ``floor`` at a later evaluation, whether or not it came back), ``first_grok`` (the first time
    it reached the threshold twice in a row), ``budget`` (steps of the config) and ``final_val_acc``.

    hold: steps the accuracy must hold; default the config's ``grok_hold`` if it is > 0, else
    ``DEFAULT_HOLD``; ``inf``: to the end of the run. floor: default ``DEFAULT_FLOOR``."""
    cfg = record["config"]
    thr = cfg["grok_threshold"] if threshold is None else threshold
    lo = min(DEFAULT_FLOOR, thr) if floor is None else floor
    h = hold if hold is not None else (cfg.get("grok_hold") or DEFAULT_HOLD)
    hist = record["history"]
    steps, acc = hist["step"], [-1.0 if a is None else a for a in hist["val_acc"]]
    lasting = steps_to_grok(steps, acc, thr, hold=h if math.isfinite(h) else steps[-1] + 1, floor=lo)
    transient = steps_to_grok(steps, acc, thr, hold=0)
    ok = record.get("status") == "ok"
    fell = transient is not None and (min(a for s, a in zip(steps, acc) if s > transient) < lo or not ok)
    return {"time": lasting if (ok and lasting is not None) else steps[-1], "event": ok and lasting is not None,
            "collapsed": bool(fell), "first_grok": transient,
            "budget": cfg["steps"], "final_val_acc": hist["val_acc"][-1], "status": record.get("status")}


def lasting_grok(record: dict) -> int | None:
    """The step of a record's lasting grok (``outcome``'s definition, the one every chapter reports),
    None if it has none (or failed). ``record["steps_to_grok"]`` is the first grok, lasting or not."""
    if record.get("status") == "failed" or not record.get("history", {}).get("step"):
        return None
    o = outcome(record)
    return int(o["time"]) if o["event"] else None


def endpoints(record: dict, threshold: float | None = None, floor: float = DEFAULT_FLOOR) -> dict:
    """Every endpoint of ``paper/protocol.md`` for one run, read from its history:

    ``stable`` (primary): the first evaluation from which validation accuracy stays ≥ the threshold
    to the end of the run, with ``stable_event`` (False: censored at ``last``); ``first``: the first
    evaluation ≥ the threshold; ``chapter``: ``lasting_grok`` (≥ the threshold held 1,000 steps,
    floor 0.9); ``final_val_acc``; ``post_grok_share``: the share of evaluations after ``first`` at
    ≥ the threshold; ``collapses``: how many times accuracy fell below ``floor`` after ``first``;
    ``observed``: steps seen after ``first``. A stable grok needs two evaluations or more at the end.
    ``hold5k`` (sensitivity endpoint, amendment A2): the first evaluation from which accuracy stays
    ≥ the threshold for ``HOLD_LONG`` steps, with ``hold5k_event`` (False: censored at the latest
    start the run can show, ``last`` − ``HOLD_LONG``, or 0)."""
    thr = record["config"]["grok_threshold"] if threshold is None else threshold
    steps, acc = record["history"]["step"], [-1.0 if a is None else a for a in record["history"]["val_acc"]]
    ok = record.get("status") == "ok"
    first_i = next((i for i, a in enumerate(acc) if a >= thr), None)
    stable_i = len(acc)
    while ok and stable_i > 0 and acc[stable_i - 1] >= thr:
        stable_i -= 1
    stable_event = ok and stable_i < len(acc) - 1   # at least two evaluations, as for ``steps_to_grok``
    after = acc[first_i + 1:] if first_i is not None else []
    falls = sum(1 for a, b in zip([acc[first_i]] + after, after) if a >= floor > b) if first_i is not None else 0
    hold_i = _held_from(steps, acc, thr, HOLD_LONG) if ok else None
    return {"stable": steps[stable_i] if stable_event else steps[-1], "stable_event": bool(stable_event),
            "hold5k": steps[hold_i] if hold_i is not None else max(steps[-1] - HOLD_LONG, 0),
            "hold5k_event": hold_i is not None,
            "first": steps[first_i] if first_i is not None else None, "chapter": lasting_grok(record),
            "final_val_acc": record["history"]["val_acc"][-1], "last": steps[-1],
            "post_grok_share": sum(a >= thr for a in after) / len(after) if after else None,
            "collapses": falls, "observed": steps[-1] - steps[first_i] if first_i is not None else 0}


def _held_from(steps: list[int], acc: list[float], thr: float, span: int) -> int | None:
    """Index of the first evaluation i with ``acc`` ≥ ``thr`` at every evaluation in
    [steps[i], steps[i] + span] and an evaluation at or after steps[i] + span; None if there is none."""
    end = None   # the index where the current run of evaluations ≥ thr started
    for j, a in enumerate(acc):
        if a < thr:
            end = None
            continue
        end = j if end is None else end
        if steps[j] - steps[end] >= span:
            return end
    return None
