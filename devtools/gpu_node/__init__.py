"""A simulated GPU node that speaks ComfyUI's HTTP API (`manage.py run_gpu_node`): a dev/test
tool, never imported by production code.

It lets the `comfyui` backend be exercised for real (tests, `make run` with GPU_NODES=1)
without a GPU. Like one ComfyUI process it validates the submitted workflow, queues it, runs
`workers` prompts at a time (a GPU runs one by default) and keeps the history:

- `POST /prompt` {"prompt": {...}, "client_id": "...", "extra_data": {...}, "prompt_id"?}
  → 200 {"prompt_id", "number", "node_errors"}; 400 {"error": {...}, "node_errors": {...}}
  for an invalid body or workflow, with ComfyUI's error shapes. A `prompt_id` chosen by the
  client is accepted and, as on a real node, posting it twice queues it twice: a client that
  retries must first ask whether the node has it.
- `GET /history/{prompt_id}` → {} while queued or running, then
  {prompt_id: {"prompt": [number, id, workflow, extra_data, outputs], "outputs": {...},
  "status": {"status_str": "success"|"error", "completed", "messages"}, "meta": {...}}},
  the messages being ComfyUI's `execution_start` / `execution_cached` / `execution_success` |
  `execution_error` | `execution_interrupted` events with their millisecond timestamps.
- `GET /queue`, `GET /prompt`, `GET /system_stats` (node name and pool under "system" and
  "devices"), `GET /view?filename=&subfolder=` (a small PNG, or FLAC bytes for audio),
  `POST /queue` {"delete"|"clear"},
  `POST /interrupt` {"prompt_id"?}, `POST /history` {"delete"|"clear"}. Every route is also
  served under `/api`, as ComfyUI does.

Held to a real ComfyUI 0.3.64 (recorded answers in tests/devtools/comfyui/): the node classes
it knows (checkpoint loader, CLIP text encode, empty latent/image, KSampler, VAE decode, save and
preview image, empty/save audio) are declared as the real ones, every input required; INT/FLOAT/
STRING inputs are converted as ComfyUI converts them (64.5 → 64); a `ckpt_name` must name one of
`checkpoints` when the node is given some. Outputs are named as ComfyUI names them (the prefix's
folder is the subfolder, `name_00001_.png` numbered per prefix; audio under "audio", `.flac`),
and a node whose inputs equal those of a node of the last prompt run is cached: a graph posted
again is answered at once with the first run's files (`execution_cached` lists the nodes).

Simulation: service time drawn log-normally around `mean_s`, a cold start when the node has
been idle, a failure rate. Prompt text containing `[fail]` fails (a GPU error, exception
`RuntimeError`) and `[reject]` is refused by the node's safety check (exception
`PromptRejected`: the customer's fault) — the same hooks as the simulated backend.
Fault injection for tests: `flaky_http_rate` answers that share of requests with
`flaky_http_status` (503) before handling them; `drop_response_rate` handles the request and
then closes the connection without answering (a lost response); `fault_routes` limits both to
some routes (e.g. "POST /prompt").

Modules: `validation` (ComfyUI's validate_prompt for the node classes it knows), `simulation`
(the node: queue, GPU threads, history), `handlers` (the HTTP routes), `server` (the HTTP
server, `start` in background threads, `serve` until a signal).
"""

from devtools.gpu_node.server import GpuNodeServer, RunningNode, serve, start
from devtools.gpu_node.simulation import GpuNode, NodeConfig, PromptRejected
from devtools.gpu_node.validation import validate_prompt

__all__ = [
    "GpuNode",
    "GpuNodeServer",
    "NodeConfig",
    "PromptRejected",
    "RunningNode",
    "serve",
    "start",
    "validate_prompt",
]
