"""ComfyUI over HTTP: `POST /prompt`, then poll `GET /history/{prompt_id}` until it is done.

Nodes come from settings.GENERATIONS_COMFYUI_NODES, per pool: {"a100": {"a100-node-1":
"http://10.0.0.5:8188"}}. `pick_node` takes the least-loaded reachable node of the pool (its
`GET /queue`, with a short timeout), round-robin among equals and when none answers.

`backend_config` keys:
- `workflow`: a ComfyUI workflow in API format whose string values may hold placeholders,
  `{{prompt}}`, `{{seed}}` or any other param, plus `{{job_id}}`, `{{model}}` and
  `{{checkpoint}}`. A value that is exactly one placeholder takes the param's value with its
  type (`"{{steps}}"` → 30); inside a longer string it is formatted in. Without a `workflow`,
  a standard txt2img graph (checkpoint → CLIP text encode → KSampler → VAE decode → SaveImage
  as node "9") uses `prompt`, `negative_prompt`, `seed`, `steps`, `cfg`, `width`, `height`,
  `sampler_name`, `scheduler`, `denoise`, `batch_size` and `checkpoint`. A workflow's
  `filename_prefix` is made per job: ComfyUI answers an identical node from its cache with
  the earlier prompt's file, so when it lacks `{{job_id}}` the job id is added to the file's
  name (`out/shared` → `out/shared_<job id>`). A returned file not named after the job fails
  the run (`foreign_output`), and so does a run that produced no file (`no_output`): neither
  is charged.
- `defaults`: values for placeholders the params leave out (else the built-in defaults; a
  missing `seed` is derived from the job id, so a retry draws the same image).
- `checkpoint`, `output_type` (default "image"), `image_base_url` (where the node's output
  folder is published; else image URLs point at the node's `/view`),
  `customer_fault_exceptions` (exception class names that make an execution error the
  customer's fault, added to PromptRejected / ContentRejected / NSFWContentDetected),
  `max_attempts`, `backoff_s`, `backoff_max_s`, `connect_timeout_s`, `read_timeout_s`,
  `poll_max_s`, `lost_check_s` (override the GENERATIONS_COMFYUI_* settings).

Every HTTP call has a timeout. Transient failures (connection errors, timeouts, 429 and 5xx)
are retried with exponential backoff and jitter, up to `max_attempts` per call; the whole run is
bounded by the request's `timeout_s` (then the prompt is removed from the node's queue, or
interrupted if it is running, and the run fails with `timeout`). The POST carries a prompt_id
chosen here. A real node does not de-duplicate prompt ids (posted twice, it runs twice), so
after a failure that may have reached the node (no answer, a read timeout, a 500/502/504) the
node is asked whether it has the prompt (`GET /history/{id}`, `GET /queue`) and, while it
cannot tell, asked again until the deadline: the prompt is posted again only when the node
says it does not have it.

Errors: validation errors (`400` with node_errors) that concern only inputs filled from the
customer's params → `invalid_params`, the customer's fault; any other rejected workflow →
`invalid_workflow`. An execution error → `gpu_failure`, or `rejected_prompt` (the customer's
fault) when the node's exception is a content rejection.

One module per concern: `client` (HTTP: session, timeouts, retries with backoff, probes),
`workflow` (placeholders filled from the params; a 400 answer read as whose fault),
`outputs` (a history entry read into the result or the execution error) and `backend`
(`ComfyUIBackend`: node choice and the run tying them together).
"""

from generations.backends.comfyui.backend import ComfyUIBackend
from generations.backends.comfyui.client import Options, redact
from generations.backends.comfyui.workflow import DEFAULT_WORKFLOW, build_workflow

__all__ = ["DEFAULT_WORKFLOW", "ComfyUIBackend", "Options", "build_workflow", "redact"]
