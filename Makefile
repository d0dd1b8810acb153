# lrd-companion — set-up, tests and reproduction. Needs Python 3.11 and make only.
#
#   make test                      create .venv if missing, install, run the test suite
#   make demo                      L2 and LRD grokking side by side, live (76 s here)
#   make test-fast                 the suite without the slow tests (notebooks, process pools)
#   make lint                      ruff, and lint-imports (the layers core <- runs <- analysis)
#   make reproduce                 execute every notebook from the committed store (PROFILE=paper): no training
#   make reproduce PROFILE=quick   smaller grids, trained now into build/cache (each sweep prints its cost first)
#   LRD_STORE_DIR=build/fresh make reproduce   the paper profile trained from scratch into an empty store
#                                  (the records sum to 101 h of training; checkpointed: stop it with Ctrl-C or `timeout`, run again to go on)
#   make notebook NB=03            execute one notebook (by number or file name; NB="07 08" for several)
#   make protocol                  train the fair comparison's runs (paper/protocol.md) into the store, in its order;
#                                  hours: checkpointed, stop it any time, run again to go on (notebook 09 reads them)
#   make verify                    replay N=3 committed runs made on this processor, compare their histories
#   make verify OBSERVED=1         ... among the protocol's and the generality study's runs only
#   make lab                       JupyterLab on notebooks/ (Run All reads the store) beside build/notebooks/ (executed copies)
#   make benchmark                 benchmarks/step_time.py (ms per training step, ratio to reference)
#   make paper                     the manuscript: numbers -> paper/macros.tex, latexmk -> build/paper/main.pdf
#   make arxiv                     build/paper/arxiv.tar.gz, a tarball that compiles on its own
#
# DEVICE=cuda runs the notebooks on a GPU; it needs a CUDA build of torch in .venv (TORCH=cuda at the
# first `make venv` installs PyPI's CUDA build, several GB; the default is the CPU build).

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= paper
DEVICE  ?= cpu
NB      ?=
N       ?= 3
TORCH   ?= cpu
KERNEL  := lrd-companion
BUILD   := build
PY      := $(VENV)/bin/python
# constraints.txt pins torch to the version the figures were made with (the package needs >= 2.9).
# CPU builds of torch come from PyTorch's CPU index (PEP 440 ranks 2.13.0+cpu above PyPI's CUDA
# build of 2.13.0); TORCH=cuda takes PyPI's default (CUDA) build instead.
ifeq ($(TORCH),cpu)
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu
else
TORCH_INDEX ?=
endif

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
ifneq ($(NB),)
NOTEBOOKS := $(sort $(wildcard $(foreach n,$(NB),notebooks/$(n)*.ipynb notebooks/$(n))))
endif

.PHONY: venv test test-fast lint reproduce notebook lab demo benchmark clean paper arxiv verify check-device protocol

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
	$(VENV)/bin/lint-imports

check-device: venv
	@$(PY) -c "from lrdlib.runs.profiles import check_device, check_profile; check_device('$(DEVICE)'); check_profile('$(PROFILE)')" \
	  || { echo "make: DEVICE=$(DEVICE) PROFILE=$(PROFILE) cannot run here (see the line above)"; exit 2; }

reproduce: venv check-device
	@test -n "$(NOTEBOOKS)" || { echo "no notebook matches NB=$(NB)"; exit 2; }
	@mkdir -p $(BUILD)/notebooks figures
	@set -e; i=0; n=$(words $(NOTEBOOKS)); t0=$$(date +%s); \
	trap 'kill -TERM -$$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true; \
	  echo; echo "stopped in $$nb; the notebooks before it are done ($(BUILD)/notebooks), runs already trained are kept"; exit 130' INT TERM; \
	for nb in $(NOTEBOOKS); do \
	  i=$$((i+1)); out=$(BUILD)/notebooks/$$(basename $$nb); start=$$(date +%s); \
	  echo ">>> [$$i/$$n] $$nb  (profile=$(PROFILE), device=$(DEVICE); $$((start - t0)) s so far)"; \
	  setsid $(PY) -m papermill $$nb $$out -k $(KERNEL) --cwd notebooks -p profile $(PROFILE) -p device $(DEVICE) \
	    --log-level WARNING --stderr-file $(abspath $(BUILD))/notebooks/$$(basename $$nb .ipynb).stderr & pid=$$!; \
	  wait $$pid || { echo "    FAILED after $$(( $$(date +%s) - start )) s: see $$out and $(BUILD)/notebooks/$$(basename $$nb .ipynb).stderr"; exit 1; }; \
	  echo "    done in $$(( $$(date +%s) - start )) s -> $$out"; \
	done; echo "all $$n notebooks in $$(( $$(date +%s) - t0 )) s"

notebook: reproduce

verify: venv
	$(PY) -m lrdlib.runs.verify -n $(N) $(if $(filter 1 yes true,$(OBSERVED)),--observed)

protocol: venv
	$(PY) -m lrdlib.runs.halving --all

lab: venv
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@test -d $(BUILD)/notebooks || $(MAKE) reproduce
	$(VENV)/bin/jupyter lab --notebook-dir=. --ServerApp.default_url=/lab/tree/notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

demo: venv
	$(PY) -m lrdlib.demo

benchmark: venv
	$(PY) benchmarks/step_time.py --device $(DEVICE)

clean:
	rm -rf $(BUILD)/notebooks

paper: venv
	$(PY) paper/build.py pdf

arxiv: venv
	$(PY) paper/build.py arxiv
