"""Traces with another category mix: python reports/agent_cpu_runs/balanced_ops/gen_mix.py OUT_DIR JSON_MIX
(seed 0, like `python -m agent_sft.generate`; JSON_MIX replaces generate.TRAIN_MIX for this run only)."""
import json, sys
from pathlib import Path
import agent_sft.generate as G
out = Path(sys.argv[1]); mix = json.loads(sys.argv[2])
assert abs(sum(mix.values()) - 1) < 1e-9 and set(mix) == set(G.TRAIN_MIX)
G.TRAIN_MIX.clear(); G.TRAIN_MIX.update(mix)
print(G.write(G.build(0), out))
