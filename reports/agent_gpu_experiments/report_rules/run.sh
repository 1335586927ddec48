# usage, on the GPU machine from the repo root ($OUT: where results go; .whl/ holds the wheels):
#   bash reports/agent_gpu_experiments/report_rules/run.sh SEED TESTS(0|1) EVALS("on prev off")
# the gpu-preset pipeline for one seed, evaluated on the GPU server: on = the copy rules of this
# commit; prev = those of an earlier commit C (03_model and 02_agent of it, unpacked into scratch/prev
# by `git archive C 03_model 02_agent | tar x -C scratch/prev`; C was 68ce443 up to the report
# vocabulary's rounds, 9b59b3a in the answer shapes' round); off = no copy rules
set -o pipefail
. reports/agent_gpu_experiments/copy_rules/setup.sh
export LLM_STACK_CACHE=$PWD/scratch/cache
SEED=$1; TESTS=$2; EVALS=${3:-"on prev"}
rm -rf runs/* /tmp/pkprev; mkdir -p /tmp/pkprev
for p in /tmp/pk/*; do ln -s "$(readlink $p)" /tmp/pkprev/$(basename $p); done
rm /tmp/pkprev/model /tmp/pkprev/agent
ln -s $PWD/scratch/prev/03_model /tmp/pkprev/model; ln -s $PWD/scratch/prev/02_agent /tmp/pkprev/agent
T0=$(date +%s)
( sleep 575; cd $OUT && tar czf partial.tgz --exclude=partial.tgz . 2>/dev/null ) & WD=$!
if [ "$TESTS" = 1 ]; then
  TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_model_copying.py tests/test_model_grammar.py \
      tests/test_model_engine.py > $OUT/gpu_tests.log 2>&1; echo "tests rc=$? $(( $(date +%s) - T0 ))s" | tee -a $OUT/gpu_tests.log
fi
tag=g$SEED; L=$OUT/pipeline_$tag.log
python3 -m train.prepare --run $tag --data shakespeare 00c_agent_sft/data/train.jsonl > $L 2>&1 &&
python3 -m train.pretrain --run $tag --preset gpu --train.seed=$SEED --report $OUT/pretrain_$tag.json >> $L 2>&1 &&
python3 -m sft.train --run $tag --preset gpu --seed=$SEED --report $OUT/sft_$tag.json >> $L 2>&1 &&
python3 -m agent_sft.train --run $tag --preset gpu --seed=$SEED --report $OUT/sft_$tag.json >> $L 2>&1
echo "train rc=$? $(( $(date +%s) - T0 ))s" | tee -a $L
for e in $EVALS; do
  mkdir -p $OUT/eval_${tag}_$e
  flag=""; [ $e = off ] && flag="--no-copy-rules"
  path=/tmp/pk:/tmp/site; [ $e = prev ] && path=/tmp/pkprev:/tmp/site
  if [ $e = prev ] && grep -q "def report_vocabulary" scratch/prev/03_model/reporting.py 2>/dev/null; then
    # prev rules of 9b59b3a read a report vocabulary from meta.json, which agent_sft.train no longer writes
    PYTHONPATH=$path python3 -c "
import json, sys
from model.reporting import report_vocabulary
meta = json.load(open(sys.argv[1]))
meta['data']['report_vocabulary'] = report_vocabulary(json.loads(l) for l in open('00c_agent_sft/data/train.jsonl'))
json.dump(meta, open(sys.argv[1], 'w'), indent=2)" runs/$tag/agent/meta.json >> $L 2>&1
  fi
  PYTHONPATH=$path python3 -m agent_sft.eval --checkpoint runs/$tag/agent --out-dir $OUT/eval_${tag}_$e --workers 32 \
      --device cuda $flag > $OUT/eval_${tag}_$e/stdout.log 2>&1
  echo "eval $e rc=$? $(( $(date +%s) - T0 ))s" | tee -a $L
  sed -n '/^| category/,/^$/p' $OUT/eval_${tag}_$e/agent_eval.md
done
grep -Pv '\d+/\d+ \[[0-9:<?]+' $L > $L.clean; mv $L.clean $L
kill $WD 2>/dev/null
cd $OUT && rm -f partial.tgz && tar czf /tmp/results.tgz . && find . -mindepth 1 -delete && mv /tmp/results.tgz .
