#!/bin/bash
# One CPU agent pipeline of reports/agent_cpu_runs/balanced_ops/README.md, on its own traces, into runs/RUN:
#   bash reports/agent_cpu_runs/balanced_ops/run.sh RUN TRACES_DIR ["pretrain overrides"]
# The README's five commands (00c_agent_sft/README.md), with the presets' time limits; the eval scores the
# run's own test split (TRACES_DIR/test.jsonl) and writes reports/agent_cpu_runs/balanced_ops/RUN/.
# Two of these ran at a time on the two cores (one torch thread each).
set -e
RUN=$1; TR=$2; PO=$3
P=${PYTHON:-.venv/bin/python}
OUT=reports/agent_cpu_runs/balanced_ops/$RUN
t() { echo "\$ $*"; s=$(date +%s.%N); "$@"; echo "# $(echo "$(date +%s.%N) - $s" | bc) s"; }
t $P -m train.prepare --run $RUN --data shakespeare $TR/train.jsonl
t $P -m train.pretrain --run $RUN --preset cpu $PO
t $P -m sft.train --run $RUN --preset cpu --report $OUT/sft_cpu.json
t $P -m agent_sft.train --run $RUN --preset cpu --traces $TR --report $OUT/sft_cpu.json
t $P -m agent_sft.eval --checkpoint runs/$RUN/agent --threads 1 --test-file $TR/test.jsonl --out-dir $OUT
