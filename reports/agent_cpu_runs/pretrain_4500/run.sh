# CPU: pretraining steps P (no time limit), then the README's SFT stages (time-limited agent stage) and eval.
# usage: bash scratch/cpu_pre.sh TAG P SEED    (reuses runs/cpu's tokenizer and token shards)
set -e -o pipefail
cd /work/main; source .venv/bin/activate
TAG=$1; P=$2; SEED=$3; L=/tmp/cpu_pre_$TAG.log
rm -rf runs/$TAG; mkdir -p runs/$TAG; cp -r runs/cpu/data runs/cpu/tokenizer runs/$TAG/
: > $L
for cmd in "python -m train.pretrain --run $TAG --preset cpu --train.max_steps=$P --train.max_time=0 --train.seed=$SEED" \
           "python -m sft.train --run $TAG --preset cpu --seed=$SEED" \
           "python -m agent_sft.train --run $TAG --preset cpu --seed=$SEED" \
           "python -m agent_sft.eval --checkpoint runs/$TAG/agent --threads 1 --out-dir /tmp/ev_$TAG"; do
  echo "\$ $cmd" >> $L; t0=$(date +%s.%N)
  $cmd 2>&1 | tr '\r' '\n' | grep -Pv '\d+/\d+ \[[0-9:<?]+' | grep -v "^\s*$" >> $L
  echo "# $(python -c "print(round($(date +%s.%N) - $t0, 1))") s" >> $L
done
echo DONE >> $L
