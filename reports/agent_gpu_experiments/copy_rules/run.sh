# usage, on the GPU machine from the repo root ($OUT: where results go; .whl/ holds the wheels):
#   bash reports/agent_gpu_experiments/copy_rules/run.sh SEED TESTS(0|1) EVALS("on off")
# the gpu-preset pipeline for one seed, evaluated on the GPU server with and without the copy rules:
# report_rules/run.sh (the same script, which also knows "prev"); the results here came from it
# when it still lived here (git log -- reports/agent_gpu_experiments/copy_rules/run.sh)
exec bash reports/agent_gpu_experiments/report_rules/run.sh "$1" "$2" "${3:-on off}"
