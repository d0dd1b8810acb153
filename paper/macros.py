"""Every number of the manuscript as a LaTeX macro, and the checks that keep the text honest.

``paper/macros.yaml`` maps each macro name to a source: a chapter results file
``<results>/<from>.json`` (written by notebook ``notebooks/<from>.ipynb`` at PROFILE=paper, so
``<results>`` is ``paper/results/chapters`` by default; ``from: run_times`` is the run times that
``paper/build.py`` computes from the store's records into ``build/paper/run_times.json``, see
``run_times_file``), a key path inside it, and optionally a
reduction of a list (``agg``) and a format. ``write_macros`` turns the mapping into
``paper/macros.tex``, one ``\\newcommand`` per entry; an entry whose file does not exist yet is
defined as ``\\pending{<notebook number>}`` (a small bold "[pending: 03]" in the PDF), so the
manuscript builds while the paper-profile runs are in progress.

Key paths (``key``): a list of components, each a dict key (string), a list index (integer),
``"*"`` (every element of a list or every value of a dict: the path continues in each, and the
entry needs an ``agg``), a glob such as ``"Q/K trained*"`` (the one dict key it matches: for keys
that embed a profile's budget) or a mapping ``{field: value, ...}`` (the one list element whose
fields have these values, e.g. ``{n: 128, batch: 1}``). A plain dotted string ``"a.b.0"`` is
accepted where no key contains a dot. ``agg`` reduces a list (median, mean, min, max, sum refuse a
list with nulls: a censored run is never silently dropped; len and count, the non-null ones, do
not); ``divide`` scales the value (seconds to hours: 3600). ``if_null`` is the text a macro
prints when its key path resolves to null/NaN and the notebook writes null on purpose (a
Kaplan-Meier median beyond the budget, ``inf`` written as null: ``if_null: "> budget"``); without
it such a value is an error. A key path that does not resolve is an error either way.

Formats (``format``): a Python format spec (``".2f"``, ``".3g"``, ``"d"``, ``",d"``); one ending
in ``%`` multiplies by 100 and prints ``\\%`` (``".0%"`` -> ``50\\%``); one ending in ``e`` prints
``m\\times10^{k}``; ``"text"`` prints a string (a verdict) with LaTeX's special characters
escaped. Default: ``d`` for integers, ``.3g`` for floats.

The three checks (``python paper/build.py check``; ``tests/test_paper.py`` runs each on planted
violations and on the repository's text):

* ``undefined_macros``: a control sequence in the text that is neither a LaTeX or package command
  (``LATEX_COMMANDS``), nor one of the commands ``main.tex`` defines (``CUSTOM_COMMANDS``, checked
  against main.tex by ``custom_commands_in``), nor a macro of the mapping;
* ``missing_values``: a mapping entry whose results file is present but which has no value there
  (the key path does not resolve, or resolves to null/NaN, or the reduction has nothing to reduce);
* ``typed_numbers``: a number that a present results file holds, typed in the text instead of
  quoted through its macro. Every numeric leaf of every present file is rendered in each format the
  mapping uses for that file and in the defaults (``DEFAULT_FORMATS``: 3 significant digits, and
  integers as they are), and every macro's own value (after agg and divide) in its format; each
  rendering is looked for as a whole number token in the text with comments, macro names and the
  arguments of referencing commands (``\\ref``, ``\\cite``, ``\\includegraphics`` ...) removed and
  ``3.2\\times10^{-4}`` read as ``3.2e-4``. Renderings that are trivial are not looked for: integers
  0-10 (counts, section and panel numbers, small exponents), integers 1900-2100 (years), and the
  design constants the text states (``SETTING_CONSTANTS``: p = 113, width 128, batch 512, the seeds'
  strengths, the grids' train fractions, the 95 % level). Numbers the results files do not hold (a
  derivation's 8/(3 pi), Muon's coefficients) are not affected. Where a design constant is flagged
  because a result happens to equal it, write it in words or add it to SETTING_CONSTANTS.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median

PAPER = Path(__file__).resolve().parent
MAPPING = PAPER / "macros.yaml"
RESULTS = PAPER / "results" / "chapters"
MACROS_TEX = PAPER / "macros.tex"
# The run times (``from: run_times``): computed from the committed store by paper/build.py into the
# git-ignored build folder, never committed; see run_times_file.
RUN_TIMES = PAPER.parent / "build" / "paper" / "run_times.json"
FIGURES = PAPER.parent / "figures"

# Commands that main.tex defines with \newcommand (tests check that this list and main.tex agree).
CUSTOM_COMMANDS = frozenset({"pending", "todo", "figprofile", "nuc", "fro", "uvt", "srank", "NS", "tr"})

# LaTeX and package commands the text may use (kernel, amsmath/amssymb, graphicx, booktabs, natbib,
# hyperref, cleveref, xspace, xcolor, caption, geometry, microtype, enumitem). A command missing
# here fails the check: add it when the text starts using it.
LATEX_COMMANDS = frozenset("""
documentclass usepackage begin end input include maketitle title author date and thanks today
section subsection subsubsection paragraph appendix label ref eqref pageref autoref cref Cref nameref
caption includegraphics graphicspath centering raggedright raggedleft noindent par item newline linebreak
emph textbf textit texttt textsc textrm textsf textup textnormal mathrm mathbf mathit mathsf mathtt mathcal mathbb
mathbfit boldsymbol text operatorname DeclareMathOperator bm
small footnotesize scriptsize tiny normalsize large Large LARGE huge bfseries itshape ttfamily rmfamily sffamily mdseries
upshape normalfont
cite citet citep citealp citeauthor citeyear bibliography bibliographystyle url href hypersetup
newcommand renewcommand providecommand newenvironment setlength addtolength setcounter stepcounter value
hspace vspace hfill vfill quad qquad enspace thinspace medskip smallskip bigskip clearpage newpage pagebreak
footnote footnotemark footnotetext xspace xspaceaddexceptions
toprule midrule bottomrule cmidrule addlinespace multicolumn multirow hline cline arraystretch tabcolsep
textwidth columnwidth linewidth textheight paperwidth
alpha beta gamma delta epsilon varepsilon eta theta vartheta lambda mu nu pi rho sigma tau phi varphi chi psi omega
Gamma Delta Theta Lambda Sigma Phi Psi Omega ell nabla partial infty
langle rangle lVert rVert lvert rvert Vert vert left right big Big bigl bigr Bigl Bigr middle
sum prod int frac tfrac dfrac sqrt cdot cdots ldots dots times approx sim simeq le leq ge geq ne neq equiv propto
in notin subset subseteq cup cap setminus forall exists to mapsto rightarrow Rightarrow leftarrow Leftarrow
leftrightarrow Leftrightarrow implies iff perp parallel top intercal circ pm mp ast star
max min arg argmin argmax log exp sin cos tan det lim sup inf
hat tilde bar overline underline widehat widetilde vec dot ddot prime
mathop limits nolimits displaystyle textstyle scriptstyle
ensuremath mbox hbox vbox raisebox makebox fbox parbox rule strut phantom hphantom vphantom
color textcolor definecolor colorbox
emptyset varnothing odot bmod pmod texorpdfstring
nocite protect relax ifx fi else ifcsname csname endcsname
captionsetup setlist
""".split())

SETTING_CONSTANTS = frozenset({
    "113", "114", "128", "512",          # p, vocabulary p + 1, model width, batch size
    "0.001", "1e-3",                     # AdamW learning rate
    "0.5", "0.1", "0.005", "0.01",       # seed train fraction and Luon lambda; L2 wd; LRD alpha (the seeds' two values)
    "1.0",                               # L2 at its own strength, wd 1.0
    "0.02", "0.95",                      # Muon learning rate and momentum
    "0.99",                              # the grokking threshold on validation accuracy
    "0.2", "0.25", "0.3", "0.35", "0.4", "0.6", "0.7", "0.8",   # train fractions of the grids
    "20", "25", "30", "35", "40", "50", "60", "70", "80",       # the same as percentages ("at 40-50 % data")
    "95",                                # the level of every interval
    "3.11",                              # the Python version (reproducibility)
})
DEFAULT_FORMATS = (".3g", "d")
AGGREGATIONS = ("median", "mean", "min", "max", "sum", "len", "count", "first", "last")
NAME = re.compile(r"^[A-Za-z]+$")
SOURCE = re.compile(r"^[0-9A-Za-z_]+$")


# ---------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class Macro:
    """One mapping entry: ``\\name`` is ``format(agg(<results>/<source>.json at key))``."""
    name: str
    source: str
    key: tuple
    fmt: str | None = None
    agg: str | None = None
    divide: float | None = None
    if_null: str | None = None   # printed (escaped) when the value at the key is null/NaN

    @property
    def tag(self) -> str:
        """What ``\\pending`` prints: the notebook number (``03``) or the source's name."""
        m = re.match(r"^(\d+)_", self.source)
        return m.group(1) if m else self.source.replace("_", "-")


class MappingError(ValueError):
    pass


def parse_key(key) -> tuple:
    if isinstance(key, str):
        return tuple(int(k) if k.lstrip("-").isdigit() else k for k in key.split("."))
    if isinstance(key, list) and key:
        return tuple(_freeze(k) for k in key)
    raise MappingError(f"key must be a non-empty list or a dotted string, not {key!r}")


def key_text(key: tuple) -> str:
    """A key path as written in the mapping, for messages."""
    return "[" + ", ".join(str(dict(k)) if isinstance(k, tuple) else repr(k) for k in key) + "]"


def _freeze(k):
    return tuple(sorted(k.items())) if isinstance(k, dict) else k


def load_mapping(path: Path = MAPPING) -> dict[str, Macro]:
    """The mapping file as ``{name: Macro}``, validated (names, sources, aggregations)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    out, errors = {}, []
    for name, entry in raw.items():
        if not NAME.match(str(name)):
            errors.append(f"{name}: a macro name has letters only")
            continue
        if name in LATEX_COMMANDS or name in CUSTOM_COMMANDS:
            errors.append(f"{name}: clashes with a LaTeX or custom command")
        if not isinstance(entry, dict) or "from" not in entry or "key" not in entry:
            errors.append(f"{name}: needs 'from' and 'key'")
            continue
        unknown = set(entry) - {"from", "key", "format", "agg", "divide", "if_null", "note"}
        if unknown:
            errors.append(f"{name}: unknown field(s) {sorted(unknown)}")
        if not SOURCE.match(str(entry["from"])):
            errors.append(f"{name}: 'from' is a results file's stem (e.g. 03_grokking_mechanism), not {entry['from']!r}")
        agg = entry.get("agg")
        if agg is not None and agg not in AGGREGATIONS:
            errors.append(f"{name}: agg {agg!r} is not one of {AGGREGATIONS}")
        try:
            key = parse_key(entry["key"])
        except MappingError as e:
            errors.append(f"{name}: {e}")
            continue
        if "*" in key and agg is None:
            errors.append(f"{name}: a key with '*' needs an agg")
        divide = entry.get("divide")
        if divide is not None and (not isinstance(divide, (int, float)) or isinstance(divide, bool) or divide == 0):
            errors.append(f"{name}: divide must be a non-zero number, not {divide!r}")
            divide = None
        if_null = entry.get("if_null")
        if if_null is not None and not isinstance(if_null, str):
            errors.append(f"{name}: if_null must be a string (the text printed for a null value), not {if_null!r}")
            if_null = None
        out[name] = Macro(name, str(entry["from"]), key, entry.get("format"), agg, divide, if_null)
    if errors:
        raise MappingError("macros mapping:\n  " + "\n  ".join(errors))
    return out


# ---------------------------------------------------------------- values


class NoValue(LookupError):
    pass


def resolve(data, key: tuple):
    """The value at ``key`` in ``data`` (see the module docstring for the components)."""
    cur, done = data, []
    for i, k in enumerate(key):
        where = "/".join(map(str, done)) or "<top>"
        if k == "*":
            items = cur.values() if isinstance(cur, dict) else cur if isinstance(cur, list) else None
            if items is None:
                raise NoValue(f"'*' at {where}: not a list or dict")
            return [resolve(x, key[i + 1:]) if key[i + 1:] else x for x in items]
        if isinstance(k, tuple):              # a selector {field: value}
            want = dict(k)
            hits = [x for x in (cur if isinstance(cur, list) else [])
                    if isinstance(x, dict) and all(_same(x.get(f), v) for f, v in want.items())]
            if len(hits) != 1:
                raise NoValue(f"{want} at {where}: {len(hits)} matching elements (need exactly 1)")
            cur = hits[0]
        elif isinstance(cur, dict) and isinstance(k, str) and "*" in k:   # a glob over the keys
            hits = [c for c in cur if fnmatch.fnmatchcase(str(c), k)]
            if len(hits) != 1:
                raise NoValue(f"{k!r} at {where}: {len(hits)} matching keys (need exactly 1)")
            cur = cur[hits[0]]
        elif isinstance(cur, dict):
            if k not in cur and str(k) in cur:
                k = str(k)
            if k not in cur:
                raise NoValue(f"no key {k!r} at {where} (keys: {', '.join(map(str, list(cur)[:12]))})")
            cur = cur[k]
        elif isinstance(cur, list) and isinstance(k, int):
            if not -len(cur) <= k < len(cur):
                raise NoValue(f"index {k} at {where}: list of {len(cur)}")
            cur = cur[k]
        else:
            raise NoValue(f"cannot take {k!r} at {where} ({type(cur).__name__})")
        done.append(k if not isinstance(k, tuple) else dict(k))
    return cur


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def aggregate(value, agg: str | None):
    if agg is None:
        if isinstance(value, (list, dict)):
            raise NoValue(f"a {type(value).__name__} needs an agg ({', '.join(AGGREGATIONS)})")
        return value
    if not isinstance(value, list):
        raise NoValue(f"agg {agg!r} needs a list, got {type(value).__name__}")
    if agg == "len":
        return len(value)
    if agg == "count":       # how many are not null (e.g. runs that grokked among steps-to-grok)
        return sum(not _is_missing(v) for v in value)
    if not value:
        raise NoValue(f"agg {agg!r} of an empty list")
    if agg in ("first", "last"):
        return value[0] if agg == "first" else value[-1]
    if any(_is_missing(v) for v in value):
        # a null is a censored run or a diverged one: a median over the rest would hide it (STYLE.md)
        raise NoValue(f"agg {agg!r} over a list with nulls: {value}")
    return {"median": median, "mean": mean, "min": min, "max": max, "sum": sum}[agg](value)


class _Null:
    """The value of an entry with ``if_null`` whose key path resolves to null/NaN."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()


def value_of(macro: Macro, data):
    """The entry's value (after agg and divide); ``NULL`` when it is null/NaN and the entry has ``if_null``."""
    v = aggregate(resolve(data, macro.key), macro.agg)
    if _is_missing(v):
        if macro.if_null is not None:
            return NULL
        raise NoValue("the value is null/NaN (add if_null: \"<text>\" to the entry if the notebook writes null on purpose)")
    if macro.divide is not None:
        if isinstance(v, (str, bool)):
            raise NoValue(f"divide needs a number, got {v!r}")
        v = v / macro.divide
    return v


# ---------------------------------------------------------------- rendering

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# symbols the notebooks' verdict sentences use that LaTeX's utf8 input does not define
_TEX_UNICODE = {"∞": r"\ensuremath{\infty}", "≥": r"\ensuremath{\ge}", "≤": r"\ensuremath{\le}", "≈": r"\ensuremath{\approx}",
                "×": r"\ensuremath{\times}", "−": r"\ensuremath{-}", "√": r"\ensuremath{\surd}", "‖": r"\ensuremath{\Vert}",
                "ᵀ": r"\ensuremath{^{\top}}", "α": r"\ensuremath{\alpha}", "λ": r"\ensuremath{\lambda}",
                "η": r"\ensuremath{\eta}", "θ": r"\ensuremath{\theta}", "ρ": r"\ensuremath{\rho}", "σ": r"\ensuremath{\sigma}",
                "φ": r"\ensuremath{\varphi}", "ₒ": r"\ensuremath{_{o}}", "–": "--", "—": "---"}


def tex_escape(s: str) -> str:
    """``s`` as LaTeX text: the special characters escaped, the math symbols of ``_TEX_UNICODE`` as commands."""
    return "".join(_TEX_SPECIAL.get(c) or _TEX_UNICODE.get(c, c) for c in s)


def render(value, fmt: str | None) -> str:
    """``value`` as LaTeX text in format ``fmt`` (see the module docstring)."""
    if fmt == "text":
        return tex_escape(str(value))
    if isinstance(value, str):
        raise NoValue(f"a string ({value!r}) needs format: text")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not math.isfinite(value):
        return r"\ensuremath{\infty}" if value > 0 else r"\ensuremath{-\infty}"
    if fmt is None:
        fmt = "d" if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15 else ".3g"
    if fmt.endswith("%"):
        return format(value, fmt).replace("%", r"\%")
    if fmt.endswith("d"):
        return format(int(round(value)), fmt).replace("-", "\\ensuremath{-}", 1)
    s = format(value, fmt)
    if "e" in s or "E" in s:
        mant, exp = re.split("[eE]", s)
        exp = int(exp)
        return rf"\ensuremath{{{mant}\times10^{{{exp}}}}}" if exp else mant
    return s.replace("-", r"\ensuremath{-}", 1) if s.startswith("-") else s


# ---------------------------------------------------------------- macros.tex


@dataclass
class MacroTable:
    values: dict[str, str] = field(default_factory=dict)       # name -> LaTeX definition body
    pending: dict[str, list[str]] = field(default_factory=dict)  # missing source -> macro names
    errors: list[str] = field(default_factory=list)            # entries whose present file has no value


def run_times_file(results: Path) -> Path:
    """Where the ``run_times`` source of ``results`` is: for the paper's own results (``RESULTS``)
    ``RUN_TIMES`` in the build folder, written from the store by ``paper/build.py`` (a
    ``run_times.json`` in the results folder itself is ignored then); for any other results folder
    its own ``run_times.json``."""
    results = Path(results)
    return RUN_TIMES if results.resolve() == RESULTS.resolve() else results / "run_times.json"


def load_results(results: Path) -> dict[str, dict]:
    """Every ``<stem>.json`` under ``results`` (NaN/Infinity accepted, as json.dumps writes them),
    with ``run_times`` from ``run_times_file(results)`` when that file exists."""
    results = Path(results)
    files = {p.stem: json.loads(p.read_text(encoding="utf-8"))
             for p in sorted(results.glob("*.json")) if p.name != "run_times.json"} if results.is_dir() else {}
    rt = run_times_file(results)
    if rt.exists():
        files["run_times"] = json.loads(rt.read_text(encoding="utf-8"))
    return files


def build_table(mapping: dict[str, Macro], results: Path = RESULTS) -> MacroTable:
    files = load_results(results)
    t = MacroTable()
    for name, m in mapping.items():
        if m.source not in files:
            t.pending.setdefault(m.source, []).append(name)
            t.values[name] = rf"\pending{{{m.tag}}}"
            continue
        try:
            v = value_of(m, files[m.source])
            t.values[name] = tex_escape(m.if_null) if v is NULL else render(v, m.fmt)
        except NoValue as e:
            t.errors.append(f"\\{name} ({m.source}.json, key {key_text(m.key)}): {e}")
            t.values[name] = rf"\pending{{{m.tag}?}}"
    return t


def missing_values(mapping: dict[str, Macro], results: Path = RESULTS) -> list[str]:
    """Mapping entries whose results file is present but holds no value at their key path."""
    return build_table(mapping, results).errors


def figure_profiles(figures: Path = FIGURES) -> dict[str, str]:
    """``{figure name: profile that made it}`` from ``figures/profiles.json`` (``lrdlib.analysis.figures.save_figure``)."""
    path = Path(figures) / "profiles.json"
    return json.loads(path.read_text()) if path.exists() else {}


def figure_profile_lines(figures: Path = FIGURES) -> list[str]:
    """macros.tex lines that make ``\\figprofile{<name>}`` (main.tex) print "[pending: figure from the
    quick profile]" in the caption of every figure not yet made at the paper profile."""
    lines = ["% ---- figures not yet made at the paper profile (figures/profiles.json); \\figprofile marks them"]
    for name, profile in sorted(figure_profiles(figures).items()):
        if profile != "paper":
            lines.append(rf"\expandafter\def\csname lrdfig@{name}\endcsname{{{profile}}}")
    return lines + [""]


def write_macros(mapping: dict[str, Macro] | None = None, results: Path = RESULTS, out: Path = MACROS_TEX,
                 figures: Path = FIGURES) -> MacroTable:
    """Write ``out`` (``paper/macros.tex``) from the mapping and the figures' profiles; returns the
    table (pending, errors)."""
    mapping = load_mapping() if mapping is None else mapping
    t = build_table(mapping, results)
    lines = ["% Generated by paper/build.py from paper/macros.yaml and the chapter results files in",
             f"% {_display(results)}. Do not edit: edit the mapping or rerun the notebooks.", ""]
    by_source = defaultdict(list)
    for name, m in mapping.items():
        by_source[m.source].append(name)
    for source in sorted(by_source):
        state = "PENDING (no results file yet)" if source in t.pending else f"{source}.json"
        lines.append(f"% ---- {source}: {state}")
        lines += [rf"\newcommand{{\{n}}}{{{t.values[n]}\xspace}}" for n in by_source[source]]
        lines.append("")
    lines += figure_profile_lines(figures)
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    return t


def _display(p: Path) -> str:
    p = Path(p).resolve()
    try:
        return str(p.relative_to(PAPER.parent))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------- the text


def tex_files(paper: Path = PAPER) -> list[Path]:
    """The manuscript's .tex files: everything under paper/ except the generated macros.tex."""
    return sorted(p for p in Path(paper).rglob("*.tex") if p.name != "macros.tex" and "results" not in p.parts)


def strip_comments(text: str) -> str:
    """Drop LaTeX comments (an unescaped % to the end of the line), keeping the line breaks."""
    return re.sub(r"(?<!\\)%.*", "", text)


_CS = re.compile(r"\\([A-Za-z@]+)")


def commands_in(text: str) -> list[tuple[str, int]]:
    """(command name, line number) of every control word in ``text`` outside comments."""
    text = strip_comments(text)
    return [(m.group(1), text.count("\n", 0, m.start()) + 1) for m in _CS.finditer(text)]


def custom_commands_in(main_tex: str) -> set[str]:
    """Names that ``main_tex`` defines with \\newcommand / \\renewcommand / \\DeclareMathOperator."""
    text = strip_comments(main_tex)
    return set(re.findall(r"\\(?:newcommand|providecommand|DeclareMathOperator)\*?\s*\{?\\([A-Za-z]+)", text))


def undefined_macros(texts: dict[str, str], mapping: dict[str, Macro]) -> list[str]:
    """``file:line: \\name`` for every control word that is not a LaTeX/package command, not a
    custom command of main.tex and not a macro of the mapping."""
    known = LATEX_COMMANDS | CUSTOM_COMMANDS | set(mapping)
    return [f"{f}:{line}: \\{name}" for f, text in texts.items() for name, line in commands_in(text) if name not in known]


def macro_usage(texts: dict[str, str], mapping: dict[str, Macro]) -> dict[str, set[str]]:
    """Macro name -> the files that use it."""
    used = defaultdict(set)
    for f, text in texts.items():
        for name, _ in commands_in(text):
            if name in mapping:
                used[name].add(f)
    return used


# ---------------------------------------------------------------- typed numbers

# arguments that are names, not prose: labels, references, citations, files, lengths
_ARG_COMMANDS = ("label|ref|eqref|pageref|autoref|cref|Cref|nameref|cite|citet|citep|citealp|citeauthor|citeyear|nocite|"
                 "input|include|includegraphics|graphicspath|usepackage|documentclass|bibliography|bibliographystyle|url|"
                 "href|pending|todo|figprofile|begin|end|setlength|hypersetup|captionsetup|setlist|definecolor|hspace|vspace")
_ARG = re.compile(r"\\(?:" + _ARG_COMMANDS + r")\*?(?:\s*\[[^\]]*\])*(?:\s*\{(?:[^{}]|\{[^{}]*\})*\})?")
_DIMEN = re.compile(r"(?<![\w.])\d*\.?\d+\s*(?:in|pt|cm|mm|em|ex|bp)\b")
_SCI = re.compile(r"(?:(\d+(?:\.\d+)?)\s*(?:\\times|\\cdot)\s*)?(?<![\d.])10\^\{?\s*([-+]?\d+)\}?")
_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?![\w])")


def prose(text: str) -> str:
    """The text a reader sees, for number matching: comments, the arguments of referencing
    commands, lengths and control words removed; ``a\\times10^{k}`` written as ``ae<k>``;
    thousands separators ``{,}`` and ``\\,`` as commas. Line breaks are kept."""
    keep_lines = lambda m: "\n" * m.group(0).count("\n")
    t = strip_comments(text)
    t = _ARG.sub(keep_lines, t)
    t = _DIMEN.sub(" ", t)
    t = _SCI.sub(lambda m: f" {m.group(1) or 1}e{int(m.group(2))} ", t)
    t = re.sub(r"(\d)(?:\{,\}|\\,)(\d{3})", r"\1,\2", t)
    t = _CS.sub(" ", t)
    return t.replace("~", " ")


def number_tokens(text: str) -> list[tuple[str, int]]:
    """(number as typed, line) for every number in the prose of ``text``."""
    t = prose(text)
    return [(m.group(1), t.count("\n", 0, m.start()) + 1) for m in _NUM.finditer(t)]


def _norm_token(s: str) -> str:
    s = s.lstrip("+-").replace(",", "")
    if "e" in s:
        mant, exp = s.split("e")
        return f"{mant}e{int(exp)}"
    return s


def trivial(token: str) -> bool:
    """Numbers the check does not look for (see the module docstring)."""
    if token in SETTING_CONSTANTS:
        return True
    try:
        x = float(token)
    except ValueError:
        return True
    return x.is_integer() and (0 <= x <= 10 or 1900 <= x <= 2100)


def renderings(value, formats) -> set[str]:
    """``value`` written in each of ``formats``, normalised like text tokens, trivial ones dropped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return set()
    out = set()
    for fmt in formats:
        if fmt == "text":
            continue
        try:
            if fmt.endswith("%"):
                s = format(value, fmt).rstrip("%")
            elif fmt.endswith("d"):
                if not float(value).is_integer():
                    continue
                s = format(int(value), fmt)
            else:
                s = format(value, fmt)
        except (ValueError, TypeError):
            continue
        s = _norm_token(s)
        if not trivial(s):
            out.add(s)
    return out


def numeric_leaves(data, path=()):
    """(path, number) for every int/float leaf of a JSON document (not booleans, not non-finite)."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from numeric_leaves(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from numeric_leaves(v, (*path, i))
    elif isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data):
        yield path, data


def typed_numbers(texts: dict[str, str], mapping: dict[str, Macro], results: Path = RESULTS) -> list[str]:
    """``file:line: 'token' is <source> at <path>`` for every number of a present results file that
    the text types instead of quoting through a macro: each numeric leaf in ``DEFAULT_FORMATS`` and
    in every format the mapping uses for that file, and each macro's own value (after its agg and
    divide) in its own format."""
    files = load_results(results)
    formats = defaultdict(set)
    for m in mapping.values():
        if m.fmt and m.fmt != "text":
            formats[m.source].add(m.fmt)
    where = {}                                  # rendering -> what holds it
    for source, data in files.items():
        fmts = (*DEFAULT_FORMATS, *sorted(formats[source]))
        for path, v in numeric_leaves(data):
            for s in renderings(v, fmts):
                where.setdefault(s, f"{source}.json at {'/'.join(map(str, path))}")
    for m in mapping.values():
        if m.source in files and m.fmt != "text":
            try:
                v = value_of(m, files[m.source])
            except NoValue:
                continue
            for s in renderings(v, (m.fmt or (".3g" if isinstance(v, float) else "d"),)):
                where.setdefault(s, f"the value of \\{m.name}")
    hits = []
    for f, text in texts.items():
        for token, line in number_tokens(text):
            s = _norm_token(token)
            if s in where and not trivial(s):
                hits.append(f"{f}:{line}: '{token}' is {where[s]}: quote it through a macro")
    return hits


# ---------------------------------------------------------------- all checks


def read_texts(paper: Path = PAPER) -> dict[str, str]:
    paper = Path(paper)
    return {str(p.relative_to(paper)): p.read_text(encoding="utf-8") for p in tex_files(paper)}


_FIGURE_ENV = re.compile(r"\\begin\{figure\*?\}(.*?)\\end\{figure\*?\}", re.S)


def unmarked_figures(texts: dict[str, str], figures: Path = FIGURES) -> list[str]:
    """``file: name: problem`` for every included figure whose figure environment lacks
    ``\\figprofile{name}`` or that ``figures/profiles.json`` does not list (so a reader cannot
    tell a quick-profile figure from a paper one)."""
    known = figure_profiles(figures)
    out = []
    for f, text in texts.items():
        for env in _FIGURE_ENV.findall(strip_comments(text)):
            marked = set(re.findall(r"\\figprofile\{([^}]+)\}", env))
            for name in re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", env):
                if name not in marked:
                    out.append(rf"{f}: {name}: no \figprofile{{{name}}} in its figure environment")
                if name not in known:
                    out.append(f"{f}: {name}: not in figures/profiles.json (save it with save_figure(..., profile=profile))")
    return out


def check(paper: Path = PAPER, results: Path = RESULTS, mapping_path: Path | None = None) -> dict[str, list[str]]:
    """Run every check on the manuscript in ``paper`` against ``results``; {check: problems}."""
    paper = Path(paper)
    mapping = load_mapping(mapping_path or paper / "macros.yaml")
    texts = read_texts(paper)
    main = texts.get("main.tex", "")
    custom = custom_commands_in(main)
    drift = sorted(custom ^ CUSTOM_COMMANDS)
    return {
        "undefined macros": undefined_macros(texts, mapping),
        "custom commands (CUSTOM_COMMANDS vs main.tex)": [f"\\{n}: in {'main.tex only' if n in custom else 'CUSTOM_COMMANDS only'}"
                                                          for n in drift] if main else [],
        "mapping entries without a value": missing_values(mapping, results),
        "numbers typed instead of quoted": typed_numbers(texts, mapping, results),
        "figures without their profile": unmarked_figures(texts, paper.parent / "figures"),
    }
