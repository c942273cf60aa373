#!/bin/bash
# Issue 33's screen, one training at a time (after the AdamW baseline, base-42): seed 42, one thread, full steps.
cd /work/wt33
export PYTHONPATH=/work/wt33
PY=/work/main/.venv/bin/python
while pgrep -f "screen.py --seed 42 --threads 1 --json benchmarks/results/screen33/base-42.json" >/dev/null; do sleep 10; done
one() {  # name, then screen.py's arguments
  name=$1; shift
  echo "$(date -u +%H:%M:%S) start $name: $PY benchmarks/screen.py $*" >> benchmarks/results/screen33/queue.log
  $PY benchmarks/screen.py "$@" --json benchmarks/results/screen33/$name.json > benchmarks/results/screen33/$name.log 2>&1
  echo "$(date -u +%H:%M:%S) end $name: $(tail -1 benchmarks/results/screen33/$name.log)" >> benchmarks/results/screen33/queue.log
}
one muon-42 --seed 42 --threads 1 --train optimizer=muon
one muon-all-42 --seed 42 --threads 1 --train optimizer=muon --model rotary=true norm=rms qk_norm=true activation=relu2 zero_init=true
one muon-relu2-42 --seed 42 --threads 1 --train optimizer=muon --model activation=relu2
one muon-rotary-42 --seed 42 --threads 1 --train optimizer=muon --model rotary=true
one muon-zero-42 --seed 42 --threads 1 --train optimizer=muon --model zero_init=true
one muon-qknorm-42 --seed 42 --threads 1 --train optimizer=muon --model qk_norm=true
one muon-rms-42 --seed 42 --threads 1 --train optimizer=muon --model norm=rms
