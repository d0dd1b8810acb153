#!/usr/bin/env bash
# A sitting of `make paper-runs` on a lent GPU machine, in one call of a fixed length.
#
#   bash benchmarks/gpu_sitting.sh SECONDS NB [WORKERS]      e.g.  bash benchmarks/gpu_sitting.sh 540 07 12
#   bash benchmarks/gpu_sitting.sh 540 "07 04" 14               two notebooks side by side, 7 workers each
#
# The machine has PyTorch but no Jupyter, so the notebook is executed plainly
# (`python -m lrdlib.chunks --plain`); WORKERS runs share the card (`$LRD_WORKERS`). In order:
#   1. what the machine is (torch, GPU);
#   2. benchmarks/step_time.py on the GPU (eager; the seed-style reference loop in the same run);
#   3. determinism on the GPU: one short run trained twice in one process, histories compared;
#   4. the sitting (SKIP_CHECKS=1: this alone): runs start while they can end inside SECONDS (at $LRD_S_PER_STEP, default
#      0.01 s per step per worker), the rest is killed at the end; every finished record is kept.
# Everything the sitting added under paper/results goes to $OUT/results.tar.gz (unpack it in the
# checkout: `tar xzf results.tar.gz`), with $OUT/sitting.log and $OUT/step_time_cuda.json; the
# sitting's line for paper/results/sittings.jsonl is printed, to be appended there.
set -u
SECONDS_TOTAL=${1:?usage: gpu_sitting.sh SECONDS NB [WORKERS]}
NB=${2:?usage: gpu_sitting.sh SECONDS NB [WORKERS]}
WORKERS=${3:-12}
OUT=${OUT:-build/gpu-sitting}
mkdir -p "$OUT" build
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg
T0=$(date +%s)
touch build/.gpu-sitting-start
left() { echo $((SECONDS_TOTAL - ($(date +%s) - T0))); }

echo "== machine"
python3 -c "import torch, sys, os; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0), '| python', sys.version.split()[0], '| cores', os.cpu_count())"

if [ -z "${SKIP_CHECKS:-}" ]; then   # SKIP_CHECKS=1: the sitting alone (steps 2 and 3 made already)
echo "== step time on the GPU (eager; reference in the same run)"
timeout 100 python3 benchmarks/step_time.py --device cuda --modes eager --repeats 3 --steps 100 \
  --out "$OUT/step_time_cuda.json" 2>&1 | tail -12

echo "== determinism on the GPU: the seed LRD run's first 400 steps, twice"
timeout 60 python3 - <<'EOF'
from lrdlib import seed_config
from lrdlib.training import run
cfg = seed_config("LRD", steps=400, eval_every=50, device="cuda")
a, b = run(cfg)[0], run(cfg)[0]
same = all(a["history"][k] == b["history"][k] for k in a["history"])
diff = max(abs(x - y) for k in ("train_loss", "val_loss") for x, y in zip(a["history"][k], b["history"][k]))
print(f"identical histories: {same} (max |Δ loss| {diff:.3g}); {a['ms_per_step']:.2f} ms per step alone")
EOF
fi

echo "== the sitting: notebook $NB, $WORKERS workers, $(left) s left"
HOURS=$(python3 -c "print(max(0.001, ($(left) - 25) / 3600))")
# LRD_SUSPEND=0: no run is suspended at the deadline (lrdlib.suspend): its state would stay on this machine
LRD_SUSPEND=0 LRD_WORKERS=$WORKERS LRD_S_PER_STEP=${LRD_S_PER_STEP:-0.01} timeout $(( $(left) - 20 )) \
  python3 -m lrdlib.chunks --hours "$HOURS" --notebooks $NB $([ "$(echo $NB | wc -w)" -gt 1 ] && echo --side-by-side) \
  --device cuda --plain 2>&1 | tee "$OUT/sitting.log" | tail -40
echo "sitting ended after $(( $(date +%s) - T0 )) s of the call"

# (sittings.jsonl stays out: the checkout it goes back to has its own lines; its new line is printed)
find paper/results -type f -newer build/.gpu-sitting-start ! -name sittings.jsonl > build/gpu-sitting-files.txt
[ paper/results/sittings.jsonl -nt build/.gpu-sitting-start ] && tail -n "$(echo $NB | wc -w)" paper/results/sittings.jsonl | sed 's/^/sittings.jsonl: /'
echo "== $(wc -l < build/gpu-sitting-files.txt) new files under paper/results"
tar czf "$OUT/results.tar.gz" -T build/gpu-sitting-files.txt
python3 - <<'EOF'
from pathlib import Path
from lrdlib.store import read_file
recs = [read_file(Path(p)) for p in Path("build/gpu-sitting-files.txt").read_text().split() if "/runs/" in p]
steps = sum(r.get("steps_run") or 0 for r in recs)
secs = sum(r.get("wall_time_s") or 0 for r in recs)
print(f"{len(recs)} new records, {steps} steps trained, {secs:.0f} s of run time summed over runs "
      f"({1000 * secs / max(steps, 1):.2f} ms per step per worker); devices {sorted({r.get('device') for r in recs})}")
EOF
