# lrd-companion — set-up, tests and reproduction. Needs Python 3.11 and make only.
#
#   make test                      create .venv if missing, install, run the test suite
#   make test-fast                 the suite without the slow tests (notebooks, process pools): under 2 minutes
#   make lint                      ruff on lrdlib/, tests/, benchmarks/ and the notebooks
#   make reproduce                 execute every notebook with papermill (PROFILE=quick)
#   make reproduce PROFILE=paper   the paper profile from the committed results store (paper/results/runs):
#                                  trains only what is missing; FRESH=1 retrains every run once
#   make paper-runs HOURS=2        train the paper profile's missing runs for HOURS, stop cleanly, print what is left
#                                  (NB="03 04" limits it to some notebooks; SIDE=1 runs those side by side,
#                                  the workers shared, so no core idles while one waits on a stage's last run)
#   make verify                    retrain N=3 random committed runs made on this processor, compare their histories
#   make reproduce PROFILE=paper DEVICE=cuda
#   make notebook NB=03            execute one notebook (by number or file name; NB="07 08" for several)
#   make lab                       JupyterLab on notebooks/ with the registered kernel
#   make benchmark                 benchmarks/step_time.py (ms per training step, ratio to reference)
#   make paper                     the manuscript: numbers -> paper/macros.tex, latexmk -> build/paper/main.pdf
#   make arxiv                     build/paper/arxiv.tar.gz, a tarball that compiles on its own

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
DEVICE  ?= cpu
NB      ?=
HOURS   ?= 2
N       ?= 3
FRESH   ?=
KERNEL  := lrd-companion
BUILD   := build
PY      := $(VENV)/bin/python
# constraints.txt pins torch to the version the figures were made with (the package needs >= 2.9).
# CPU builds of torch come from PyTorch's CPU index (PEP 440 ranks 2.13.0+cpu above PyPI's CUDA
# build of 2.13.0); DEVICE=cuda takes PyPI's default (CUDA) build instead.
ifeq ($(DEVICE),cpu)
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu
else
TORCH_INDEX ?=
endif

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
ifneq ($(NB),)
NOTEBOOKS := $(sort $(wildcard $(foreach n,$(NB),notebooks/$(n)*.ipynb notebooks/$(n))))
endif

.PHONY: venv test test-fast lint reproduce notebook lab benchmark clean paper arxiv paper-runs verify

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --timeout 20 --retries 1 $(TORCH_INDEX) -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	@touch $@

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

lint: venv
	$(VENV)/bin/ruff check lrdlib tests benchmarks notebooks

reproduce: venv
	@test -n "$(NOTEBOOKS)" || { echo "no notebook matches NB=$(NB)"; exit 2; }
	@mkdir -p $(BUILD)/notebooks figures
	@set -e; $(if $(FRESH),export LRD_FRESH_SINCE=$$(date +%s);) for nb in $(NOTEBOOKS); do \
	  out=$(BUILD)/notebooks/$$(basename $$nb); start=$$(date +%s); \
	  echo ">>> $$nb  (profile=$(PROFILE), device=$(DEVICE))"; \
	  TQDM_DISABLE=1 $(PY) -m papermill $$nb $$out -k $(KERNEL) --cwd notebooks -p profile $(PROFILE) -p device $(DEVICE) \
	    --progress-bar --log-level WARNING; \
	  echo "    done in $$(( $$(date +%s) - start )) s -> $$out"; \
	done

notebook: reproduce

paper-runs: venv
	$(PY) -m lrdlib.chunks --hours $(HOURS) --device $(DEVICE) $(if $(NB),--notebooks $(NB)) $(if $(SIDE),--side-by-side)

verify: venv
	$(PY) -m lrdlib.verify -n $(N)

lab: venv
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

benchmark: venv
	$(PY) benchmarks/step_time.py --device $(DEVICE)

clean:
	rm -rf $(BUILD)/notebooks

paper: venv
	$(PY) paper/build.py pdf

arxiv: venv
	$(PY) paper/build.py arxiv
