"""A finished prompt's history entry read into the run's result: its output files (every
`{filename, subfolder, type}` under any key: images, gifs, videos, audio, 3d, …) with where to
fetch them, the GPU's own start/finish timestamps, or the error: the execution error as whose
fault it is (`rejected_prompt` for a content rejection, else `gpu_failure` / `interrupted`),
`no_output` when the prompt produced no file, `foreign_output` when a file is not named after
the job (another prompt's file from ComfyUI's cache) — neither the customer's fault."""

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

    files = [output_file(item, base, config) for item in output_items(entry.get("outputs"))]
    saved = [f for f in files if f["type"] == "output"]
    files = saved or files
    if not files:
        # Nothing to hand the customer (e.g. a workflow whose output node writes no file): the
        # run failed, and not by the customer's fault, so the hold is released.
        raise BackendError(
            f"GPU node {node} finished the prompt without producing an output file.",
            code="no_output",
            node=node,
            started_at=_timestamp(messages.get("execution_start")),
            finished_at=_timestamp(messages.get("execution_success")),
        )
    foreign = [f for f in files if request.job_id not in f"{f['subfolder']}/{f['filename']}"]
    if foreign:
        # Every output node's filename_prefix holds the job id (see workflow.py): a file not
        # named after this job is another prompt's, reported from ComfyUI's cache. Never hand
        # it out.
        logger.error(
            "Job %s: GPU node %s reported files not named after the job: %s",
            request.job_id,
            node,
            [f["filename"] for f in foreign],
        )
        raise BackendError(
            f"GPU node {node} reported an output file of another job "
            f"({foreign[0]['filename']}); it is not handed out.",
            code="foreign_output",
            node=node,
        )
    started = _timestamp(messages.get("execution_start"))
    finished = _timestamp(messages.get("execution_success"))
    if started and finished and finished < started:
        started = finished = None
    logger.info(
        "Job %s: prompt %s succeeded on GPU node %s (%d output(s))",
        request.job_id,
        prompt_id,
        node,
        len(files),
    )
    return RunResult(
        output={
            "type": config.get("output_type", "image"),
            "url": files[0]["url"],
            "images": files,
            "prompt_id": prompt_id,
            "seed": values.get("seed"),
            # The plan's watermark flag as the workflow got it (`{{watermark}}`).
            "watermark": request.watermark,
        },
        node=node,
        started_at=started,
        finished_at=finished,
        meta={"prompt_id": prompt_id, "node_url": redact(base)},
    )


def output_items(outputs) -> list[dict]:
    """Every `{filename, subfolder, type}` file of a history entry's outputs, under whatever
    key the node lists it (`images`, `gifs`, `videos`, `audio`, `3d`, `latents`, …), in node
    order; other values (`text`, `animated`, …) are not files."""
    items: list[dict] = []
    if not isinstance(outputs, dict):
        return items
    for node_id in sorted(outputs, key=str):
        ui = outputs[node_id]
        if not isinstance(ui, dict):
            continue
        for values in ui.values():
            if not isinstance(values, list):
                continue
            for item in values:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("filename"), str)
                    and item["filename"]
                ):
                    items.append(item)
    return items


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
