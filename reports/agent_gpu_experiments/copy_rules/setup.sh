# sourced by the device scripts: our packages as links (so __file__.resolve() finds the repo), wheels
rm -rf /tmp/pk /tmp/site; mkdir -p /tmp/pk
for m in 04_transformer:transformer 05_gpu:gpu 00_train:train 00b_sft:sft 00c_agent_sft:agent_sft 02_agent:agent 03_model:model 01_app:app; do
  ln -s "$PWD/${m%%:*}" "/tmp/pk/${m##*:}"; done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
python3 -c "import torch, triton, fastapi, uvicorn, httpx, tiktoken, regex; print('torch', torch.__version__, 'triton', triton.__version__)"
