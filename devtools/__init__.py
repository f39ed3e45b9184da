"""Development and test tools: never part of production.

Installed only by `config/settings/local.py` and `config/settings/test.py` (not base or
production), and imported by no production module. Today: the simulated ComfyUI GPU node
(`devtools.gpu_node`, `manage.py run_gpu_node`) that the `comfyui` backend is exercised against.
"""
