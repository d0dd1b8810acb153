"""The figure style: print sizes, legible fonts, one colour per method, seed spread, outcomes."""
import itertools
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from lrdlib.analysis import figures as F  # noqa: E402

ARMS = ["L2 (seed, wd 0.1)", "L2 (wd 1.0)", "LRD (seed, α 0.005)", "Luon (seed, λ 0.5)",
        "SVT (ℓ1 on σ)", "exact polar", "low-rank projection", "no decay"]


def _tidy(arms=("LRD", "L2"), seeds=(0, 1, 2), steps=(0, 50, 100)):
    return pd.DataFrame([{"arm": a, "seed": s, "step": t, "acc": 0.1 * s + t / 1000}
                         for a in arms for s in seeds for t in steps])


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.mark.parametrize("width,inches", [("single", 3.3), ("full", 6.8)])
def test_figure_print_size(width, inches):
    fig, axes = F.figure(width, height=2.0, ncols=2)
    assert fig.get_size_inches() == pytest.approx([inches, 2.0])
    assert len(axes) == 2


def test_bad_width_names_the_valid_ones():
    with pytest.raises(ValueError, match="single, full"):
        F.figure("double")


def test_saved_figure_fonts_at_least_7pt(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    fig, axes = F.figure("full", height=2.2, ncols=2)
    F.plot_spread(axes[0], _tidy(), "acc")
    F.draw_ceiling(axes[0], 0.5)
    axes[0].set(xlabel="step", ylabel="validation accuracy", title="a title")
    axes[0].legend()
    runs = pd.DataFrame({"arm": ["L2", "L2", "LRD"], "steps_to_grok": [None, 300, 200], "final_val_acc": [0.5, 1, 1]})
    F.plot_grok_outcomes(axes[1], runs, budget=500)
    fig.suptitle("suptitle")
    paths = F.save_figure(fig, "style_check")
    assert [p.suffix for p in paths] == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert F.small_text(fig) == []
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert sizes and min(sizes) >= F.MIN_FONT_PT


def test_small_text_is_caught_and_warned(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    fig, ax = F.figure("single")
    ax.set_title("tiny", fontsize=5)
    assert any("tiny" in s for s in F.small_text(fig))
    with pytest.warns(UserWarning, match="below 7"):
        F.save_figure(fig, "tiny")


def test_method_colours_stable_and_distinct():
    assert F.METHOD_COLORS == {"L2": "#0072B2", "LRD": "#D55E00", "Luon": "#009E73"}
    for m in F.METHOD_COLORS:
        assert F.arm_styles([f"{m} (seed)"])[f"{m} (seed)"]["color"].lower() == F.METHOD_COLORS[m].lower()
    # the same arm gets the same colour whatever else is plotted beside it
    a = F.arm_styles(["LRD (α 0.01)", "L2 (wd 1.0)"])
    b = F.arm_styles(["L2 (wd 1.0)", "Luon", "LRD (α 0.01)"])
    assert a["LRD (α 0.01)"]["color"] == b["LRD (α 0.01)"]["color"] == F.METHOD_COLORS["LRD"].lower()


def test_arm_styles_distinct_colours_and_markers():
    sty = F.arm_styles(ARMS)
    rgb = {a: np.array(to_rgb(s["color"])) for a, s in sty.items()}
    for a, b in itertools.combinations(ARMS, 2):
        assert np.linalg.norm(rgb[a] - rgb[b]) > 0.15, (a, b, sty[a], sty[b])
    # arms of one method keep its hue but differ in line style and marker too
    l2a, l2b = sty["L2 (seed, wd 0.1)"], sty["L2 (wd 1.0)"]
    assert l2a["ls"] != l2b["ls"] and l2a["marker"] != l2b["marker"]
    others = [sty[a]["marker"] for a in ARMS if F.method_of(a) is None]
    assert len(set(others)) == len(others)
    assert F.method_of("LRD (seed, α 0.005)") == "LRD" and F.method_of("SVT (ℓ1 on σ)") is None


def test_plot_spread_median_and_band():
    df = _tidy()
    fig, ax = F.figure("single")
    lines = F.plot_spread(ax, df, "acc")
    assert set(lines) == {"LRD", "L2"}
    med = df[df.arm == "LRD"].groupby("step").acc.median()
    np.testing.assert_allclose(lines["LRD"].get_ydata(), med.values)
    assert lines["LRD"].get_label() == "LRD (n = 3)"
    assert lines["LRD"].get_color().lower() == F.METHOD_COLORS["LRD"].lower()
    bands = ax.collections
    assert len(bands) == 2
    verts = bands[0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(df[df.arm == "LRD"].acc.min())
    assert verts[:, 1].max() == pytest.approx(df[df.arm == "LRD"].acc.max())


def test_plot_spread_single_seed_draws_no_band_and_checks_columns():
    fig, ax = F.figure("single")
    F.plot_spread(ax, _tidy(seeds=(0,)), "acc")
    assert len(ax.collections) == 0
    with pytest.raises(ValueError, match="lacks columns"):
        F.plot_spread(ax, _tidy().drop(columns="seed"), "acc")


def test_grok_outcomes_filled_vs_hollow():
    runs = pd.DataFrame({"arm": ["L2", "L2", "LRD"], "steps_to_grok": [None, 300.0, 200.0],
                         "final_val_acc": [0.5, 0.995, 0.999]})
    fig, ax = F.figure("single")
    F.plot_grok_outcomes(ax, runs, budget=500)
    filled, hollow = [], []
    for c in ax.collections:
        if len(c.get_offsets()) == 0:
            continue
        face = c.get_facecolor()[0]
        (hollow if np.allclose(face[:3], 1.0) else filled).append(c)
    assert sum(len(c.get_offsets()) for c in filled) == 2
    assert [tuple(o) for c in hollow for o in c.get_offsets()] == [(0.0 + np.linspace(-0.15, 0.15, 2)[0], 500.0)]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["L2\n1/2 grokked", "LRD\n1/1 grokked"]
    assert any("0.50" in t.get_text() for t in ax.texts)


def test_grok_outcomes_many_censored_runs_get_one_label():
    runs = pd.DataFrame({"arm": ["L2"] * 6 + ["LRD"] * 2, "steps_to_grok": [None] * 6 + [None, 100.0],
                         "final_val_acc": [0.49, 0.5, 0.51, 0.5, 0.5, 0.505, 0.7, 1.0]})
    fig, ax = F.figure("single")
    F.plot_grok_outcomes(ax, runs, budget=500)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["↑ 0.49–0.51", "↑ 0.70"]


def test_profile_of_each_figure_is_recorded_and_a_paper_figure_is_kept(tmp_path, monkeypatch):
    """figures/profiles.json names the profile that made each figure; a smoke or quick run writes
    beside a paper-profile figure (build/figures/<profile>/), never over it."""
    figs = tmp_path / "figures"
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))

    def draw(title):
        fig, ax = F.figure("single")
        ax.set_title(title)
        return fig

    F.save_figure(draw("quick one"), "demo", profile="quick")
    assert F.figure_profiles() == {"demo": "quick"}
    F.save_figure(draw("paper one"), "demo", profile="paper")            # paper replaces quick
    assert F.figure_profiles() == {"demo": "paper"}
    paper_pdf = (figs / "demo.pdf").read_bytes()
    out = F.save_figure(draw("a later quick one"), "demo", profile="quick")
    assert out == [figs / "quick" / "demo.pdf", figs / "quick" / "demo.png"]
    assert (figs / "demo.pdf").read_bytes() == paper_pdf and out[0].read_bytes() != paper_pdf
    assert F.figure_profiles() == {"demo": "paper"}
    F.save_figure(draw("no profile"), "other")                             # ad hoc: figures/, nothing recorded
    assert (figs / "other.pdf").exists() and F.figure_profiles() == {"demo": "paper"}
    with pytest.raises(ValueError, match="profile='fast'.*smoke, quick, paper"):
        F.save_figure(draw("x"), "demo", profile="fast")


def test_committed_figures_all_have_a_profile():
    from lrdlib.runs.paths import repo_root

    root = repo_root()
    made = F.figure_profiles(root / "figures")
    on_disk = {p.stem for p in (root / "figures").glob("*.pdf")}
    assert on_disk == set(made), (f"figures without a profile: {sorted(on_disk - set(made))}; "
                                  f"listed but absent: {sorted(set(made) - on_disk)}")
    assert set(made.values()) <= {"smoke", "quick", "paper"} and "smoke" not in made.values()


def _strict(text):
    """json.loads that refuses NaN/Infinity, as strict readers (JavaScript, jq --strict) do."""
    def refuse(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=refuse)


def test_chapter_results_are_strict_json_with_null_for_non_finite(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("LRD_STORE_DIR", str(tmp_path / "paper" / "results" / "runs"))
    res = {"profile": "paper", "KM median": float("inf"), "q25": np.float64("nan"), "n": np.int64(5),
           "steps": [100.0, float("-inf")], "t": torch.tensor(0.5), "ok": np.bool_(True)}
    path = F.save_results("demo", res)
    for p in (path, tmp_path / "paper" / "results" / "chapters" / "demo.json"):
        got = _strict(p.read_text())
        assert got == {"profile": "paper", "KM median": None, "q25": None, "n": 5, "steps": [100.0, None],
                       "t": 0.5, "ok": True}


def test_chapter_numbers_do_not_carry_processor_rounding(tmp_path, monkeypatch):
    """Two processors that round the last digits differently write the same file."""
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    a = {"share": 0.1234567891, "residual": 2.3e-16, "neg": -4.1e-17, "tol": 1e-12, "steps": [700, 1.5]}
    b = {"share": 0.1234567894, "residual": 7.9e-16, "neg": -9.0e-17, "tol": 1e-12, "steps": [700, 1.5]}
    text = F.save_results("demo", a).read_text()
    assert F.save_results("demo", b).read_text() == text
    assert json.loads(text) == {"share": 0.123457, "residual": 1e-15, "neg": -1e-16, "tol": 1e-12, "steps": [700, 1.5]}


def test_committed_chapter_results_are_strict_json():
    from lrdlib.runs.paths import repo_root

    files = sorted((repo_root() / "paper" / "results" / "chapters").glob("*.json"))
    assert files, "no committed chapter results found"
    for p in files:
        _strict(p.read_text())


def test_noise_bound_records_the_tolerance_and_refuses_a_value_above_it():
    """Rounding noise is recorded as its tolerance (processor-independent); a value above it is an error."""
    assert F.noise_bound([3e-13, -8e-13], 1e-11) == 1e-11
    with pytest.raises(ValueError, match="2e-10 exceeds the noise tolerance 1e-11"):
        F.noise_bound([1e-13, -2e-10], 1e-11)


def test_a_figure_interrupted_while_written_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from lrdlib.analysis.figures import save_figure
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    pdf, png = save_figure(fig, "02_atomic")
    old = pdf.read_bytes()

    def interrupted(path, **kw):
        open(path, "wb").write(b"%PDF-1.4 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, "02_atomic")
    assert pdf.read_bytes() == old and not [p for p in pdf.parent.iterdir() if p.name.endswith(".tmp")]
    plt.close(fig)
