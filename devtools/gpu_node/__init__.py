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
  "devices"), `GET /object_info[/{class}]`, `GET /view?filename=&subfolder=` (a small PNG,
  FLAC bytes for audio, placeholder bytes otherwise),
  `POST /queue` {"delete"|"clear"},
  `POST /interrupt` {"prompt_id"?}, `POST /history` {"delete"|"clear"}. Every route is also
  served under `/api`, as ComfyUI does.

Held to a real ComfyUI 0.3.64 (recorded answers in tests/devtools/comfyui/): its node classes
are the real node's, all 491 of them, built from the recorded `GET /object_info`
(`object_info.json`, unedited, also served on `GET /object_info`), and every node's inputs are
validated as ComfyUI validates them (required inputs, link types, INT/FLOAT/STRING/BOOLEAN
converted as ComfyUI converts them: 64.5 → 64; min/max; choices); a `ckpt_name` must name one
of `checkpoints` when the node is given some. Any graph of those classes runs: the GPU's work is
one service time; the output nodes report what a real node reports (`OUTPUT_FILES`: images,
"animated" videos, audio under "audio", 3D under "3d"; `PreviewAny`'s text; nothing for
`SaveImageWebsocket` or the model savers), files named as ComfyUI names them (the prefix's
folder is the subfolder, `name_00001_.png` numbered per prefix); a literal given where a link
is due passes validation and fails at run time. A node whose inputs equal those of a node of
the last prompt run is cached: a graph posted again is answered at once with the first run's
files (`execution_cached` lists the nodes). A prompt_id posted twice is queued twice.

Simulation: service time drawn log-normally around `mean_s`, a cold start when the node has
been idle, a failure rate. Prompt text containing `[fail]` fails (a GPU error, exception
`RuntimeError`) and `[reject]` is refused by the node's safety check (exception
`PromptRejected`: the customer's fault) — the same hooks as the simulated backend.
Fault injection for tests: `flaky_http_rate` answers that share of requests with
`flaky_http_status` (503) before handling them; `drop_response_rate` handles the request and
then closes the connection without answering (a lost response); `fault_routes` limits both to
some routes (e.g. "POST /prompt"), `flaky_routes` / `drop_routes` one kind each, and
`flaky_limit` / `drop_limit` cap how many faults of a kind are injected.

Modules: `validation` (the recorded node classes and ComfyUI's validate_prompt), `simulation`
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
