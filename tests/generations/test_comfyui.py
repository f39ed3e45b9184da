"""The `comfyui` backend against the simulated GPU node over real HTTP on loopback: results
with the node's own timestamps, errors mapped to whose fault they are, timeouts, transient
failures retried (and given up on), node selection, and a job run end to end through the
generation services (charged once, GpuRun recorded with the node and its timestamps)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests

from credits.models import CreditHold, EntryKind, HoldStatus, LedgerEntry
from devtools import gpu_node
from generations import services
from generations.backends import BackendError, RunRequest, get_backend
from generations.backends.comfyui import ComfyUIBackend, build_workflow
from generations.backends.comfyui.outputs import output_items, run_result
from generations.backends.comfyui.workflow import DEFAULT_CHECKPOINT
from generations.models import Job, JobEvent, JobStatus
from infra_costs.models import GpuRun
from tests.factories import account_of, make_ai_model, make_org


@pytest.fixture
def start_node():
    """start_node(**NodeConfig fields) → a RunningNode on a free loopback port, stopped after."""
    running: list[gpu_node.RunningNode] = []

    def start(**fields) -> gpu_node.RunningNode:
        fields = {
            "pool": "a100",
            "port": 0,
            "mean_s": 0.05,
            "sigma": 0.0,
            # As a real node: a ckpt_name must name an installed file.
            "checkpoints": (DEFAULT_CHECKPOINT, "sdxl.safetensors", "flux.safetensors"),
            **fields,
        }
        node = gpu_node.start(gpu_node.NodeConfig(**fields))
        running.append(node)
        return node

    yield start
    for node in running:
        node.stop()


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.GENERATIONS_COMFYUI_BACKOFF_S = 0.01
    settings.GENERATIONS_COMFYUI_MAX_ATTEMPTS = 5


@pytest.fixture
def use_nodes(settings):
    """use_nodes(node, ...) → GENERATIONS_COMFYUI_NODES for pool a100 pointing at them."""

    def use(*nodes, pool="a100"):
        settings.GENERATIONS_COMFYUI_NODES = {pool: {n.name: n.url for n in nodes}}

    return use


@pytest.fixture
def node(start_node, use_nodes):
    node = start_node(mean_s=0.2)
    use_nodes(node)
    return node


def make_request(params=None, *, timeout_s=10, job_id=None, **config) -> RunRequest:
    return RunRequest(
        job_id=job_id or str(uuid.uuid4()),
        model_slug="sdxl",
        pool_slug="a100",
        params=params if params is not None else {"prompt": "a cat"},
        backend_config=config,
        timeout_s=timeout_s,
    )


def run(request: RunRequest, node_name: str | None = None):
    backend = ComfyUIBackend()
    return backend.run(request, node=node_name or backend.pick_node(request))


def history(node, prompt_id) -> dict:
    return requests.get(f"{node.url}/history/{prompt_id}", timeout=5).json()[prompt_id]


def stamp(entry, event) -> datetime:
    ms = dict(entry["status"]["messages"])[event]["timestamp"]
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- Success ----------------------------------------------------------------------------------


def test_get_backend_returns_the_comfyui_backend():
    assert isinstance(get_backend("comfyui"), ComfyUIBackend)


def test_a_run_returns_the_images_and_the_nodes_own_timestamps(node):
    request = make_request({"prompt": "a cat", "seed": 7})
    before = datetime.now(UTC)
    result = run(request)
    after = datetime.now(UTC)
    assert result.node == node.name
    output = result.output
    assert output["type"] == "image"
    assert output["seed"] == 7
    [image] = output["images"]
    assert image["filename"].startswith(request.job_id) and image["filename"].endswith(".png")
    assert (image["subfolder"], image["type"]) == ("", "output")
    assert output["url"] == image["url"]
    assert requests.get(image["url"], timeout=5).content.startswith(b"\x89PNG")

    entry = history(node, output["prompt_id"])
    assert result.started_at == stamp(entry, "execution_start")
    assert result.finished_at == stamp(entry, "execution_success")
    assert before - (after - before) <= result.started_at < result.finished_at <= after
    assert (result.finished_at - result.started_at).total_seconds() >= 0.19  # the service time
    # What was sent: the default workflow with the params filled in, with their types.
    graph = entry["prompt"][2]
    assert graph["6"]["inputs"]["text"] == "a cat"
    assert graph["3"]["inputs"]["seed"] == 7
    assert graph["3"]["inputs"]["steps"] == 20
    assert entry["prompt"][3] == {
        "job_id": request.job_id,
        "model": "sdxl",
        "client_id": f"gpu-credits-{request.job_id}",
    }


def test_a_workflow_template_in_backend_config_gets_the_params(node):
    template = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
        "2": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "masterpiece, {{ prompt }}, seed {{seed}}", "clip": ["1", 1]},
        },
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": "{{width}}", "height": 768, "batch_size": "{{images}}"},
        },
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "seed": "{{seed}}",
                "steps": "{{steps}}",
                "cfg": 4.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "denoise": 1.0,  # every input is required, as on a real node
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {
            "class_type": "SaveImage",
            "inputs": {"images": ["5", 0], "filename_prefix": "{{job_id}}"},
        },
    }
    request = make_request(
        {"prompt": "a fox", "steps": 30},
        workflow=template,
        checkpoint="flux.safetensors",
        defaults={"images": 2, "width": 640},
        output_type="image",
    )
    result = run(request)
    graph = history(node, result.output["prompt_id"])["prompt"][2]
    seed = result.output["seed"]
    assert graph["1"]["inputs"]["ckpt_name"] == "flux.safetensors"
    assert graph["2"]["inputs"]["text"] == f"masterpiece, a fox, seed {seed}"
    assert graph["3"]["inputs"] == {"width": 640, "height": 768, "batch_size": 2}
    assert graph["4"]["inputs"]["steps"] == 30 and graph["4"]["inputs"]["seed"] == seed
    assert len(result.output["images"]) == 2
    assert template["2"]["inputs"]["text"].startswith("masterpiece, {{")  # not mutated


def test_without_a_seed_the_seed_comes_from_the_job_id():
    request = make_request({"prompt": "x"})
    first, _, values = build_workflow(request)
    again, _, _ = build_workflow(request)
    assert first["3"]["inputs"]["seed"] == again["3"]["inputs"]["seed"] == values["seed"]
    other, _, _ = build_workflow(make_request({"prompt": "x"}))
    assert other["3"]["inputs"]["seed"] != values["seed"]


def test_a_placeholder_without_a_value_is_a_configuration_error():
    template = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{nope}}"}}}
    with pytest.raises(BackendError) as exc:
        build_workflow(make_request(workflow=template))
    assert (exc.value.code, exc.value.customer_fault) == ("bad_workflow", False)


def test_image_urls_can_point_at_a_published_output_folder(node):
    result = run(make_request(image_base_url="https://cdn.example.com/out/"))
    [image] = result.output["images"]
    assert image["url"] == f"https://cdn.example.com/out/{image['filename']}"


def test_audio_outputs_are_returned_as_a_real_node_lists_them(node):
    # A real ComfyUI lists SaveAudio's files under "audio" (tests/devtools/comfyui/).
    template = {
        "1": {
            "class_type": "EmptyAudio",
            "inputs": {"duration": 30.0, "sample_rate": 44100, "channels": 2},
        },
        "2": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["1", 0], "filename_prefix": "audio/{{job_id}}"},
        },
    }
    request = make_request(workflow=template, output_type="audio")
    result = run(request)
    [audio] = result.output["images"]
    assert (audio["filename"], audio["subfolder"]) == (f"{request.job_id}_00001_.flac", "audio")
    assert result.output["type"] == "audio" and result.output["url"] == audio["url"]
    assert requests.get(audio["url"], timeout=5).content.startswith(b"fLaC")


def test_node_credentials_never_show_in_results(start_node, settings):
    node = start_node()
    host = node.url.removeprefix("http://")
    settings.GENERATIONS_COMFYUI_NODES = {"a100": {node.name: f"http://user:s3cret@{host}"}}
    result = run(make_request())
    assert "s3cret" not in str(result.output) and "s3cret" not in str(result.meta)
    assert result.output["url"].startswith(f"http://{host}/view?")


# --- Failures ---------------------------------------------------------------------------------


def test_an_execution_error_is_not_the_customers_fault(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "boom [fail]"}))
    error = exc.value
    assert (error.code, error.customer_fault, error.node) == ("gpu_failure", False, node.name)
    assert "RuntimeError" in error.message
    # When the GPU worked on it, by the node's clock (for the run's record).
    [entry] = requests.get(f"{node.url}/history", timeout=5).json().values()
    assert error.started_at == stamp(entry, "execution_start")
    assert error.finished_at == stamp(entry, "execution_error")


def test_a_rejected_prompt_is_the_customers_fault(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "nope [reject]"}))
    assert (exc.value.code, exc.value.customer_fault) == ("rejected_prompt", True)


def test_more_exception_types_can_be_declared_the_customers_fault(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "[fail]"}, customer_fault_exceptions=["RuntimeError"]))
    assert (exc.value.code, exc.value.customer_fault) == ("rejected_prompt", True)


def test_params_the_node_refuses_are_the_customers_fault(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "a cat", "steps": 0, "width": 8}))
    error = exc.value
    assert (error.code, error.customer_fault) == ("invalid_params", True)
    assert "steps" in error.message and "width" in error.message
    assert node.node.stats["prompts queued"] == 0


def test_a_broken_workflow_the_node_refuses_is_not_the_customers_fault(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "a cat"}, defaults={"steps": 0}))  # the model's own default
    assert (exc.value.code, exc.value.customer_fault) == ("invalid_workflow", False)
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "a cat"}, checkpoint=["not", "a", "link"]))
    assert (exc.value.code, exc.value.customer_fault) == ("invalid_workflow", False)


def test_a_checkpoint_the_node_does_not_have_is_the_models_fault_not_the_customers(node):
    with pytest.raises(BackendError) as exc:
        run(make_request({"prompt": "a cat"}, checkpoint="missing.safetensors"))
    assert (exc.value.code, exc.value.customer_fault) == ("invalid_workflow", False)
    assert node.node.stats["prompts queued"] == 0


def test_a_run_past_its_timeout_fails_and_frees_the_gpu(start_node, use_nodes):
    node = start_node(mean_s=3)
    use_nodes(node)
    started = time.monotonic()
    with pytest.raises(BackendError) as exc:
        run(make_request(timeout_s=1))
    assert 0.9 <= time.monotonic() - started < 2.5
    assert (exc.value.code, exc.value.customer_fault) == ("timeout", False)
    # The prompt was interrupted on the node rather than left to burn GPU time.
    deadline = time.monotonic() + 2
    while requests.get(f"{node.url}/queue", timeout=5).json()["queue_running"]:
        assert time.monotonic() < deadline, "the timed-out prompt still runs"
        time.sleep(0.05)
    assert node.node.stats["prompts error"] == 1


def test_a_timed_out_prompt_still_waiting_is_removed_from_the_queue(start_node, use_nodes):
    node = start_node(mean_s=3)
    use_nodes(node)
    requests.post(f"{node.url}/prompt", json={"prompt": build_workflow(make_request())[0]})
    with pytest.raises(BackendError) as exc:
        run(make_request(timeout_s=1))
    assert exc.value.code == "timeout"
    queue = requests.get(f"{node.url}/queue", timeout=5).json()
    assert queue["queue_pending"] == [] and len(queue["queue_running"]) == 1  # the other one


# --- Transient failures -----------------------------------------------------------------------


def test_transient_503s_are_retried_until_the_run_succeeds(start_node, use_nodes):
    node = start_node(flaky_http_rate=0.3, random_seed=1234)
    use_nodes(node)
    for i in range(4):
        result = run(make_request({"prompt": f"cat {i}"}, max_attempts=10))
        assert result.output["images"]
    assert node.node.stats["flaky"] >= 3  # the retry path was really taken
    assert node.node.stats["prompts queued"] == 4  # and never queued anything twice


def test_429_too_many_requests_is_transient_too(start_node, use_nodes):
    node = start_node(flaky_http_rate=0.5, flaky_http_status=429, random_seed=7)
    use_nodes(node)
    assert run(make_request(max_attempts=12)).output["images"]
    assert node.node.stats["flaky"] >= 1


def test_retries_give_up_after_max_attempts(start_node, use_nodes):
    node = start_node(flaky_http_rate=1.0)
    use_nodes(node)
    with pytest.raises(BackendError) as exc:
        run(make_request(max_attempts=3))
    error = exc.value
    assert (error.code, error.customer_fault) == ("node_unavailable", False)
    assert "3 times" in error.message and "HTTP 503" in error.message
    assert node.node.stats["POST /prompt"] == 3


def test_a_lost_answer_to_post_prompt_does_not_queue_the_work_twice(start_node, use_nodes):
    node = start_node(drop_response_rate=1.0, fault_routes=("POST /prompt",))
    use_nodes(node)
    result = run(make_request())
    assert result.output["images"]
    assert node.node.stats["dropped"] == 1
    assert node.node.stats["prompts queued"] == 1


def test_a_node_that_is_down_is_retried_then_fails_released(settings):
    settings.GENERATIONS_COMFYUI_NODES = {"a100": {"a100-node-1": dead_url()}}
    started = time.monotonic()
    with pytest.raises(BackendError) as exc:
        run(make_request(max_attempts=4))
    error = exc.value
    assert (error.code, error.customer_fault) == ("node_unavailable", False)
    assert error.node == "a100-node-1"
    assert "4 times" in error.message and "connection failed" in error.message
    assert time.monotonic() - started < 5


def test_a_node_that_restarts_and_forgets_the_prompt_fails_fast(start_node, settings):
    first = start_node(mean_s=5)
    port = first.server.server_address[1]
    settings.GENERATIONS_COMFYUI_NODES = {"a100": {"a100-node-1": first.url}}
    outcome: dict = {}

    def go():
        try:
            run(make_request(timeout_s=30, lost_check_s=0.5), "a100-node-1")
        except BackendError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.monotonic() + 5
    while not first.node.stats["prompts queued"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.stop()
    start_node(port=port, mean_s=5)  # the same address, an empty queue
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert outcome["error"].code == "prompt_lost"


# --- Picking a node ---------------------------------------------------------------------------


def test_no_nodes_configured_for_the_pool(settings):
    settings.GENERATIONS_COMFYUI_NODES = {"l4": {"l4-node-1": "http://127.0.0.1:1"}}
    backend = ComfyUIBackend()
    with pytest.raises(BackendError) as exc:
        backend.pick_node(make_request())
    assert (exc.value.code, exc.value.customer_fault) == ("no_nodes", False)
    with pytest.raises(BackendError) as exc:
        backend.run(make_request(), node="a100-node-1")
    assert exc.value.code == "unknown_node"


def test_pick_node_prefers_the_least_loaded_node(start_node, use_nodes):
    busy = start_node(name="a100-node-1", mean_s=5)
    idle = start_node(name="a100-node-2")
    use_nodes(busy, idle)
    workflow = build_workflow(make_request())[0]
    for _ in range(2):
        requests.post(f"{busy.url}/prompt", json={"prompt": workflow}, timeout=5)
    backend = ComfyUIBackend()
    assert {backend.pick_node(make_request()) for _ in range(4)} == {"a100-node-2"}


def test_pick_node_takes_turns_among_equally_loaded_nodes(start_node, use_nodes):
    use_nodes(start_node(name="a100-node-1"), start_node(name="a100-node-2"))
    backend = ComfyUIBackend()
    picks = [backend.pick_node(make_request()) for _ in range(4)]
    assert set(picks) == {"a100-node-1", "a100-node-2"}
    assert picks[0] != picks[1]


def test_pick_node_skips_a_node_that_is_down(start_node, settings):
    live = start_node(name="a100-node-2")
    settings.GENERATIONS_COMFYUI_NODES = {
        "a100": {"a100-node-1": dead_url(), "a100-node-2": live.url}
    }
    backend = ComfyUIBackend()
    assert {backend.pick_node(make_request()) for _ in range(4)} == {"a100-node-2"}


def test_pick_node_falls_back_to_round_robin_when_no_node_answers(settings):
    settings.GENERATIONS_COMFYUI_NODES = {"a100": {"n1": dead_url(), "n2": dead_url()}}
    backend = ComfyUIBackend()
    picks = [backend.pick_node(make_request()) for _ in range(4)]
    assert set(picks) == {"n1", "n2"}


# --- End to end through the generation services ----------------------------------------------


@pytest.fixture
def comfy_model(db):
    return make_ai_model(backend="comfyui", backend_config={"checkpoint": "sdxl.safetensors"})


@pytest.mark.django_db
def test_a_job_runs_on_the_node_is_charged_once_and_its_gpu_run_recorded(node, comfy_model):
    org = make_org(plan="starter")
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": "a cat", "seed": 3}
    )
    assert services.generation_run(job_id=job.pk, worker="w1") == "succeeded"
    assert services.generation_run(job_id=job.pk, worker="w1") == "already succeeded"
    job.refresh_from_db()
    assert (job.status, job.node, job.credits_charged) == (JobStatus.SUCCEEDED, node.name, D(5))
    assert job.result["images"][0]["filename"].startswith(str(job.pk))
    assert LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.CAPTURE).count() == 1
    assert account_of(org).balance == D(495) and account_of(org).held == 0
    assert list(JobEvent.objects.filter(job=job).values_list("status", flat=True)) == [
        "queued",
        "running",
        "succeeded",
    ]
    entry = history(node, job.result["prompt_id"])
    run_row = GpuRun.objects.get(external_id=str(job.pk))
    assert (run_row.status, run_row.node.name, run_row.pool.slug) == (
        "succeeded",
        node.name,
        "a100",
    )
    assert run_row.started_at == stamp(entry, "execution_start")
    assert run_row.finished_at == stamp(entry, "execution_success")
    assert (run_row.finished_at - run_row.started_at).total_seconds() >= 0.19


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("prompt", "code", "charged"),
    [("boom [fail]", "gpu_failure", D(0)), ("nope [reject]", "rejected_prompt", D(5))],
)
def test_a_failed_job_is_released_unless_it_is_the_customers_fault(
    node, comfy_model, prompt, code, charged
):
    org = make_org(plan="starter")
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt}
    )
    assert services.generation_run(job_id=job.pk) == "failed"
    job = Job.objects.get(pk=job.pk)
    assert (job.status, job.error_code, job.credits_charged) == ("failed", code, charged)
    hold = CreditHold.objects.get(pk=job.hold_id)
    assert hold.status == (HoldStatus.CAPTURED if charged else HoldStatus.RELEASED)
    assert account_of(org).balance == D(500) - charged
    assert GpuRun.objects.get(external_id=str(job.pk)).status == "failed"


# --- Real-node behaviours (issue 10 §2) -------------------------------------------------------
# A real ComfyUI answers an identical node from its cache with the earlier prompt's file, runs a
# prompt_id posted twice twice, and lists files under any key ("audio", "3d", …): the backend
# must make every output per job, never post twice, and charge only for a file of the job's own.

RECORDED = Path(__file__).resolve().parents[1] / "devtools" / "comfyui"

# As the recording's graph: a fixed prefix, no {{job_id}}.
FIXED_PREFIX_WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": "{{seed}}"},
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "gpucredits/shared"},
    },
}


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def test_a_fixed_filename_prefix_is_made_per_job():
    request = make_request(workflow=FIXED_PREFIX_WORKFLOW)
    graph, _, _ = build_workflow(request)
    assert graph["2"]["inputs"]["filename_prefix"] == f"gpucredits/shared_{request.job_id}"
    template = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out/"}}}
    graph, _, _ = build_workflow(make_request(workflow=template, job_id="j-1"))
    assert graph["1"]["inputs"]["filename_prefix"] == "out/j-1"
    # A prefix that already holds the job id is left as the model's author wrote it.
    request = make_request()
    graph, _, _ = build_workflow(request)  # the default graph's prefix: "{{job_id}}"
    assert graph["9"]["inputs"]["filename_prefix"] == request.job_id


@pytest.mark.django_db
def test_two_jobs_with_identical_params_get_their_own_files_and_gpu_time(node):
    # Two organizations, the same params (seed included) on a model whose workflow has a fixed
    # prefix: without the job id in the prefix, job B would be answered from the node's cache
    # with job A's file and a near-zero run.
    make_ai_model(
        backend="comfyui",
        backend_config={"workflow": FIXED_PREFIX_WORKFLOW, "poll_max_s": 0.05},
    )
    jobs = []
    for name in ("acme", "globex"):
        org = make_org(plan="starter", name=name)
        job, _ = services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": "a cat", "seed": 3}
        )
        assert services.generation_run(job_id=job.pk) == "succeeded"
        jobs.append(Job.objects.get(pk=job.pk))
    files = [job.result["images"][0] for job in jobs]
    assert files[0]["filename"] != files[1]["filename"]
    for job, file in zip(jobs, files, strict=True):
        assert str(job.pk) in file["filename"] and file["subfolder"] == "gpucredits"
        assert job.credits_charged == D(5)
    runs = [GpuRun.objects.get(external_id=str(job.pk)) for job in jobs]
    for job, run_row in zip(jobs, runs, strict=True):
        entry = history(node, job.result["prompt_id"])
        assert run_row.started_at == stamp(entry, "execution_start")
        assert run_row.finished_at == stamp(entry, "execution_success")
        assert (run_row.finished_at - run_row.started_at).total_seconds() >= 0.19
        cached = dict(entry["status"]["messages"])["execution_cached"]["nodes"]
        assert "2" not in cached  # the save node really ran for this job
    assert runs[1].started_at >= runs[0].finished_at


def test_a_file_not_named_after_the_job_fails_the_run():
    # The recording: the second prompt of the same graph was answered with the first's file.
    ((prompt_id, entry),) = recorded("history_image_cached.json")["second"].items()
    request = make_request(job_id=prompt_id)
    with pytest.raises(BackendError) as exc:
        run_result(
            entry, base="http://n", node="n1", prompt_id=prompt_id, values={}, request=request
        )
    assert (exc.value.code, exc.value.customer_fault) == ("foreign_output", False)
    assert "shared_00001_.png" in exc.value.message


@pytest.mark.django_db
def test_another_jobs_file_from_the_cache_is_never_handed_out(node):
    # A prefix the backend cannot rewrite (linked from a PrimitiveString node): the node's cache
    # answers job B with job A's file; job B fails, released, instead of getting it.
    workflow = {
        **FIXED_PREFIX_WORKFLOW,
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": ["3", 0]},
        },
        "3": {"class_type": "PrimitiveString", "inputs": {"value": "gpucredits/shared"}},
    }
    make_ai_model(backend="comfyui", backend_config={"workflow": workflow})
    outcomes = []
    for name in ("acme", "globex"):
        org = make_org(plan="starter", name=name)
        job, _ = services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": "a cat", "seed": 3}
        )
        outcomes.append(services.generation_run(job_id=job.pk))
        outcomes.append(Job.objects.get(pk=job.pk))
    assert outcomes[0] == "failed"  # job A's own file is not named after it either
    for job in outcomes[1::2]:
        assert (job.status, job.error_code, job.credits_charged) == ("failed", "foreign_output", 0)
        assert account_of(job.organization).balance == D(500)


def test_files_are_collected_under_any_key_of_a_nodes_outputs():
    ((_, entry),) = recorded("history_audio.json").items()
    assert output_items(entry["outputs"]) == [
        {"filename": "job-audio_00001_.flac", "subfolder": "gpucredits", "type": "output"}
    ]
    # The recorded audio job: its file under "audio" is the result (the job id names it).
    request = make_request(job_id="job-audio", output_type="audio")
    result = run_result(
        entry, base="http://n:8188", node="n1", prompt_id="p", values={}, request=request
    )
    assert result.output["url"] == (
        "http://n:8188/view?filename=job-audio_00001_.flac&subfolder=gpucredits&type=output"
    )
    outputs = {
        "5": {"3d": [{"filename": "mesh_j_00001_.glb", "subfolder": "3d", "type": "output"}]},
        "6": {"text": ["hello"], "animated": [True]},
    }
    assert [i["filename"] for i in output_items(outputs)] == ["mesh_j_00001_.glb"]


def test_a_run_that_produced_no_file_fails_not_the_customers_fault():
    ((_, entry),) = recorded("history_audio.json").items()
    entry = {**entry, "outputs": {"2": {"text": ["no file"]}}}
    with pytest.raises(BackendError) as exc:
        run_result(
            entry, base="http://n", node="n1", prompt_id="p", values={}, request=make_request()
        )
    assert (exc.value.code, exc.value.customer_fault) == ("no_output", False)
    assert exc.value.started_at is not None  # the GPU time is still recorded


@pytest.mark.django_db
def test_a_job_whose_workflow_writes_no_file_is_released_not_charged(node):
    # SaveImageWebsocket sends the image over a websocket: the history lists no file.
    workflow = {
        **FIXED_PREFIX_WORKFLOW,
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    make_ai_model(backend="comfyui", backend_config={"workflow": workflow})
    org = make_org(plan="starter")
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": "a cat", "seed": 1}
    )
    assert services.generation_run(job_id=job.pk) == "failed"
    job = Job.objects.get(pk=job.pk)
    assert (job.status, job.error_code, job.credits_charged) == ("failed", "no_output", 0)
    assert CreditHold.objects.get(pk=job.hold_id).status == HoldStatus.RELEASED
    assert account_of(org).balance == D(500)
    assert GpuRun.objects.get(external_id=str(job.pk)).status == "failed"


def test_a_lost_answer_and_failing_checks_never_post_the_prompt_twice(start_node, use_nodes):
    # The answer to POST /prompt is lost, then GET /history and GET /queue fail for a while:
    # the backend can't tell whether the node has the prompt, so it keeps asking.
    node = start_node(
        drop_response_rate=1.0,
        drop_routes=("POST /prompt",),
        drop_limit=1,
        flaky_http_rate=1.0,
        flaky_routes=("GET /queue", "GET /history/{id}"),
        flaky_limit=8,
    )
    use_nodes(node)
    result = run(make_request(max_attempts=3))
    assert result.output["images"]
    assert node.node.stats["dropped"] == 1 and node.node.stats["flaky"] == 8
    assert node.node.stats["POST /prompt"] == 1
    assert node.node.stats["prompts queued"] == 1  # the node ran it exactly once


def test_checks_that_never_answer_end_at_the_deadline_not_in_a_second_post(start_node, use_nodes):
    node = start_node(
        drop_response_rate=1.0,
        drop_routes=("POST /prompt",),
        flaky_http_rate=1.0,
        flaky_routes=("GET /queue", "GET /history/{id}"),
    )
    use_nodes(node)
    started = time.monotonic()
    with pytest.raises(BackendError) as exc:
        run(make_request(timeout_s=2, max_attempts=3))
    assert (exc.value.code, exc.value.customer_fault) == ("timeout", False)
    assert 1.5 <= time.monotonic() - started < 4
    assert node.node.stats["POST /prompt"] == 1
    assert node.node.stats["prompts queued"] == 1
