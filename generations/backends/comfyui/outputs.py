"""A finished prompt's history entry read into the run's result: its output files (images,
gifs, videos, audio) with where to fetch them, the GPU's own start/finish timestamps, or the
execution error as whose fault it is (`rejected_prompt` for a content rejection, else
`gpu_failure` / `interrupted`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from generations.backends import BackendError, RunRequest, RunResult
from generations.backends.comfyui.client import redact

logger = logging.getLogger(__name__)

CUSTOMER_FAULT_EXCEPTIONS = frozenset({"PromptRejected", "ContentRejected", "NSFWContentDetected"})


def run_result(
    entry: dict, *, base: str, node: str, prompt_id: str, values: dict, request: RunRequest
) -> RunResult:
    """The RunResult of a history entry; raises the run's BackendError when it failed."""
    config = request.backend_config
    status = entry.get("status") or {}
    messages: dict[str, dict] = {}
    for message in status.get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) == 2:
            event, data = message
            messages[str(event)] = data if isinstance(data, dict) else {}
    failed = status.get("status_str") == "error" or (
        "execution_error" in messages or "execution_interrupted" in messages
    )
    if failed:
        error = execution_error(messages, node, config)
        # When the GPU really worked on it (the node's clock), for the run's record.
        error.started_at = _timestamp(messages.get("execution_start"))
        error.finished_at = _timestamp(
            messages.get("execution_error") or messages.get("execution_interrupted")
        )
        raise error
    if status and not status.get("completed", True):
        raise BackendError(
            f"GPU node {node} did not complete the prompt.", code="gpu_failure", node=node
        )

    images = []
    outputs = entry.get("outputs") or {}
    for node_id in sorted(outputs, key=str):
        for key in ("images", "gifs", "videos", "audio"):  # SaveAudio's files: "audio"
            for item in (outputs[node_id] or {}).get(key) or []:
                if isinstance(item, dict) and item.get("filename"):
                    images.append(output_file(item, base, config))
    saved = [i for i in images if i["type"] == "output"]
    images = saved or images
    started = _timestamp(messages.get("execution_start"))
    finished = _timestamp(messages.get("execution_success"))
    if started and finished and finished < started:
        started = finished = None
    logger.info(
        "Job %s: prompt %s succeeded on GPU node %s (%d output(s))",
        request.job_id,
        prompt_id,
        node,
        len(images),
    )
    return RunResult(
        output={
            "type": config.get("output_type", "image"),
            "url": images[0]["url"] if images else "",
            "images": images,
            "prompt_id": prompt_id,
            "seed": values.get("seed"),
        },
        node=node,
        started_at=started,
        finished_at=finished,
        meta={"prompt_id": prompt_id, "node_url": redact(base)},
    )


def output_file(item: dict, base: str, config: dict) -> dict:
    """One output file: its name, subfolder, type and URL (the published folder's, else the
    node's `/view`)."""
    filename = str(item["filename"])
    subfolder = str(item.get("subfolder") or "")
    kind = str(item.get("type") or "output")
    published = config.get("image_base_url")
    if published:
        path = f"{subfolder.strip('/')}/{filename}" if subfolder else filename
        url = f"{str(published).rstrip('/')}/{path}"
    else:
        query = urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        url = f"{redact(base)}/view?{query}"
    return {"filename": filename, "subfolder": subfolder, "type": kind, "url": url}


def execution_error(messages: dict, node: str, config: dict) -> BackendError:
    """The error a failed prompt's status messages describe."""
    if "execution_error" in messages:
        error = messages["execution_error"]
        exc_type = str(error.get("exception_type") or "")
        text = str(error.get("exception_message") or "").strip()[:500]
        fault_types = CUSTOMER_FAULT_EXCEPTIONS | set(config.get("customer_fault_exceptions") or ())
        if exc_type.rsplit(".", 1)[-1] in fault_types:
            return BackendError(
                text or "The model refused this prompt.",
                code="rejected_prompt",
                customer_fault=True,
                node=node,
            )
        where = error.get("node_type") or "the workflow"
        return BackendError(
            f"GPU error on node {node} in {where}: {exc_type or 'error'}: {text}".rstrip(": "),
            code="gpu_failure",
            node=node,
        )
    if "execution_interrupted" in messages:
        return BackendError(
            f"The prompt was interrupted on GPU node {node}.",
            code="interrupted",
            node=node,
        )
    return BackendError(
        f"GPU node {node} reported an execution error.", code="gpu_failure", node=node
    )


def _timestamp(message: dict | None) -> datetime | None:
    if not message:
        return None
    value = message.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
