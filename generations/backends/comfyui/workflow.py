"""The workflow a job posts: the model's ComfyUI workflow (API format; else a standard txt2img
graph) with its `{{placeholders}}` filled from the job's params, the model's defaults and the
built-in ones (`job_id`, `model`, `watermark`: the plan's watermark flag, true/false), and
every output node's `filename_prefix` holding the job id (injected when the template lacks
`{{job_id}}`); and a node's 400 answer to it read as whose fault it is
(`invalid_params` when only inputs filled from the customer's params are wrong, else
`invalid_workflow`)."""

from __future__ import annotations

import copy
import logging
import re
import zlib

import requests

from generations.backends import BackendError, RunRequest

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "sd_xl_base_1.0.safetensors"
DEFAULTS = {
    "negative_prompt": "",
    "steps": 20,
    "cfg": 7.0,
    "width": 1024,
    "height": 1024,
    "sampler_name": "euler",
    "scheduler": "normal",
    "denoise": 1.0,
    "batch_size": 1,
}
# ComfyUI's default graph, in API format.
DEFAULT_WORKFLOW = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": "{{seed}}",
            "steps": "{{steps}}",
            "cfg": "{{cfg}}",
            "sampler_name": "{{sampler_name}}",
            "scheduler": "{{scheduler}}",
            "denoise": "{{denoise}}",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}"},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 1]}},
    "7": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "{{negative_prompt}}", "clip": ["4", 1]},
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "{{job_id}}", "images": ["8", 0]},
    },
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def build_workflow(request: RunRequest) -> tuple[dict, dict[tuple[str, str], str], dict]:
    """(workflow with the placeholders filled, {(node_id, input): param} for the inputs filled
    from the customer's params, the values used)."""
    config = request.backend_config
    template = config.get("workflow") or DEFAULT_WORKFLOW
    if not isinstance(template, dict) or not all(
        isinstance(node, dict) and isinstance(node.get("inputs", {}), dict)
        for node in template.values()
    ):
        raise BackendError(
            "The model's ComfyUI workflow is not a workflow in API format.", code="bad_workflow"
        )
    defaults = config.get("defaults") or {}
    values = {
        **DEFAULTS,
        "checkpoint": config.get("checkpoint", DEFAULT_CHECKPOINT),
        **(defaults if isinstance(defaults, dict) else {}),
        **request.params,
        "job_id": request.job_id,
        "model": request.model_slug,
        # The plan's watermark flag (free tier): a workflow with a watermark node takes it
        # as `{{watermark}}` (true/false); the result notes it too (outputs.py).
        "watermark": request.watermark,
    }
    if "seed" not in values:
        values["seed"] = zlib.crc32(request.job_id.encode())
    from_params = set(request.params)
    missing: set[str] = set()

    def fill(value, used: set[str]):
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value)
            if whole:
                name = whole.group(1)
                used.add(name)
                if name not in values:
                    missing.add(name)
                    return value
                return values[name]

            def one(match):
                name = match.group(1)
                used.add(name)
                if name not in values:
                    missing.add(name)
                    return match.group(0)
                return str(values[name])

            return _PLACEHOLDER.sub(one, value)
        if isinstance(value, list):
            return [fill(v, used) for v in value]
        if isinstance(value, dict):
            return {k: fill(v, used) for k, v in value.items()}
        return value

    workflow = copy.deepcopy(template)
    user_inputs: dict[tuple[str, str], str] = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {})
        for name, value in list(inputs.items()):
            used: set[str] = set()
            inputs[name] = fill(value, used)
            customer = sorted(used & from_params)
            if customer:
                user_inputs[(str(node_id), name)] = ", ".join(customer)
    if missing:
        raise BackendError(
            f"The model's ComfyUI workflow has placeholders with no value: {sorted(missing)}.",
            code="bad_workflow",
        )
    for node in workflow.values():
        inputs = node.get("inputs", {})
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] = job_prefix(inputs["filename_prefix"], request.job_id)
    return workflow, user_inputs, values


def job_prefix(prefix, job_id: str):
    """An output node's `filename_prefix` made per job: the job id added to the file's name
    when the workflow did not put it there (`{{job_id}}`). ComfyUI answers an identical node
    from its cache with the earlier prompt's file, so a fixed prefix would hand job B job A's
    output (maybe another organization's). A linked prefix (another node's output) is left
    as it is; the run's files are checked against the job id anyway (outputs.py)."""
    if not isinstance(prefix, str) or job_id in prefix:
        return prefix
    if not prefix or prefix.endswith("/"):
        return f"{prefix}{job_id}"
    return f"{prefix}_{job_id}"


def workflow_rejection(
    resp: requests.Response, node: str, user_inputs: dict[tuple[str, str], str]
) -> BackendError:
    """The error for a node's 400 answer to POST /prompt (its `node_errors`)."""
    try:
        data = resp.json()
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    error = data.get("error")
    node_errors = data.get("node_errors") or {}
    problems: list[tuple[str, str | None, str]] = []
    if isinstance(node_errors, dict):
        for node_id, entry in node_errors.items():
            for e in (entry or {}).get("errors") or []:
                extra = e.get("extra_info") or {}
                text = str(e.get("message", "invalid"))
                if e.get("details"):
                    text += f" ({e['details']})"
                problems.append((str(node_id), extra.get("input_name"), text))
    summary = error.get("message") if isinstance(error, dict) else str(error or "")
    logger.warning(
        "GPU node %s rejected a workflow: %s %s", node, summary, [p[2] for p in problems]
    )
    if problems and all((nid, name) in user_inputs for nid, name, _ in problems):
        details = "; ".join(f"{user_inputs[(nid, name)]}: {text}" for nid, name, text in problems)
        return BackendError(
            f"The model rejected the parameters: {details}.",
            code="invalid_params",
            customer_fault=True,
            node=node,
        )
    return BackendError(
        f"GPU node {node} rejected the model's workflow: {summary or 'invalid prompt'}.",
        code="invalid_workflow",
        node=node,
    )
