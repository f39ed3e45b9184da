"""The simulated GPU node (`manage.py run_gpu_node`): ComfyUI's API shapes over real HTTP on
loopback, its queue, its simulation (service time, cold start, failures), fault injection, and
its fidelity to a real ComfyUI (recorded answers in tests/devtools/comfyui/)."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devtools import gpu_node
from devtools.gpu_node.validation import NODE_TYPES, object_info

BASE_DIR = Path(__file__).resolve().parents[2]

WORKFLOW = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 20,
            "cfg": 7,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "test", "images": ["8", 0]}},
}


def workflow(text="a cat", **ksampler):
    graph = copy.deepcopy(WORKFLOW)
    graph["6"]["inputs"]["text"] = text
    graph["3"]["inputs"].update(ksampler)
    return graph


@pytest.fixture
def start_node():
    """start_node(**NodeConfig fields) → a RunningNode on a free loopback port, stopped after."""
    running: list[gpu_node.RunningNode] = []

    def start(**fields) -> gpu_node.RunningNode:
        fields = {"pool": "a100", "port": 0, "mean_s": 0.05, "sigma": 0.0, **fields}
        node = gpu_node.start(gpu_node.NodeConfig(**fields))
        running.append(node)
        return node

    yield start
    for node in running:
        node.stop()


def post(node, text="a cat", **body):
    body.setdefault("prompt", workflow(text))
    return requests.post(f"{node.url}/prompt", json=body, timeout=5)


def wait_history(node, prompt_id, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = requests.get(f"{node.url}/history/{prompt_id}", timeout=5).json()
        if entry:
            return entry[prompt_id]
        time.sleep(0.02)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def events(entry) -> list[str]:
    return [event for event, _ in entry["status"]["messages"]]


def test_prompt_runs_and_history_has_comfyuis_shape(start_node):
    node = start_node(mean_s=0.6)
    resp = post(node, client_id="client-1", extra_data={"job_id": "j1"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"prompt_id", "number", "node_errors"}
    assert body["number"] == 0 and body["node_errors"] == {}
    prompt_id = body["prompt_id"]

    # Running: not in the history yet, in queue_running.
    assert requests.get(f"{node.url}/history/{prompt_id}", timeout=5).json() == {}
    queue = requests.get(f"{node.url}/queue", timeout=5).json()
    assert [item[1] for item in queue["queue_running"]] == [prompt_id]
    assert queue["queue_pending"] == []

    entry = wait_history(node, prompt_id)
    number, pid, graph, extra_data, outputs = entry["prompt"]
    assert (number, pid, outputs) == (0, prompt_id, ["9"])
    assert graph["6"]["inputs"]["text"] == "a cat"
    assert graph["3"]["inputs"]["cfg"] == 7.0  # converted as ComfyUI does
    assert extra_data == {"job_id": "j1", "client_id": "client-1"}
    images = entry["outputs"]["9"]["images"]
    assert len(images) == 1
    assert re.fullmatch(r"test_\d{5}_\.png", images[0]["filename"])
    assert (images[0]["subfolder"], images[0]["type"]) == ("", "output")
    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("success", True)
    assert events(entry) == ["execution_start", "execution_cached", "execution_success"]
    stamps = [data["timestamp"] for _, data in status["messages"]]
    assert all(isinstance(ts, int) for ts in stamps)
    assert all(data["prompt_id"] == prompt_id for _, data in status["messages"])
    assert 580 <= stamps[-1] - stamps[0] <= 3000  # the service time, in milliseconds
    assert abs(stamps[0] / 1000 - time.time()) < 10
    assert requests.get(f"{node.url}/queue", timeout=5).json() == {
        "queue_running": [],
        "queue_pending": [],
    }
    # The image can be fetched, and the whole history lists the prompt.
    view = requests.get(
        f"{node.url}/view", params={"filename": images[0]["filename"], "type": "output"}, timeout=5
    )
    assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
    assert prompt_id in requests.get(f"{node.url}/history", timeout=5).json()


def test_every_route_is_also_served_under_api(start_node):
    node = start_node()
    prompt_id = requests.post(
        f"{node.url}/api/prompt", json={"prompt": workflow()}, timeout=5
    ).json()["prompt_id"]
    assert wait_history(node, prompt_id)["status"]["status_str"] == "success"
    assert requests.get(f"{node.url}/api/queue", timeout=5).status_code == 200


def test_system_stats_name_the_node_and_its_pool(start_node):
    node = start_node(pool="l4", name="l4-node-7")
    stats = requests.get(f"{node.url}/system_stats", timeout=5).json()
    assert stats["system"]["node_name"] == "l4-node-7"
    assert stats["system"]["pool"] == "l4"
    assert stats["devices"][0]["node_name"] == "l4-node-7"
    assert stats["devices"][0]["pool"] == "l4"
    assert stats["devices"][0]["type"] == "cuda"
    assert requests.get(f"{node.url}/prompt", timeout=5).json() == {
        "exec_info": {"queue_remaining": 0}
    }


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({}, "no_prompt"),
        ({"prompt": {}}, "invalid_prompt"),
        ({"prompt": {"1": {"inputs": {}}}}, "invalid_prompt"),
        ({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, "invalid_prompt"),
        (
            {"prompt": {"4": WORKFLOW["4"]}},  # nothing to output
            "prompt_no_outputs",
        ),
    ],
)
def test_invalid_bodies_are_400_with_comfyuis_error_shape(start_node, body, error_type):
    node = start_node()
    resp = requests.post(f"{node.url}/prompt", json=body, timeout=5)
    assert resp.status_code == 400
    data = resp.json()
    assert set(data) == {"error", "node_errors"}
    assert data["error"]["type"] == error_type
    assert set(data["error"]) == {"type", "message", "details", "extra_info"}


def test_invalid_json_is_400(start_node):
    node = start_node()
    resp = requests.post(
        f"{node.url}/prompt",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_json"


def test_input_validation_errors_name_the_node_and_input(start_node):
    node = start_node()
    graph = workflow(steps=0, sampler_name="nope")
    graph["5"]["inputs"]["width"] = "wide"
    del graph["8"]["inputs"]["vae"]
    resp = requests.post(f"{node.url}/prompt", json={"prompt": graph}, timeout=5)
    assert resp.status_code == 400
    data = resp.json()
    assert data["error"]["type"] == "prompt_outputs_failed_validation"
    errors = {
        (nid, e["extra_info"]["input_name"]): e["type"]
        for nid, entry in data["node_errors"].items()
        for e in entry["errors"]
    }
    assert errors == {
        ("3", "steps"): "value_smaller_than_min",
        ("3", "sampler_name"): "value_not_in_list",
        ("5", "width"): "invalid_input_type",
        ("8", "vae"): "required_input_missing",
    }
    assert data["node_errors"]["3"]["class_type"] == "KSampler"
    assert data["node_errors"]["3"]["dependent_outputs"] == ["9"]
    assert requests.get(f"{node.url}/queue", timeout=5).json()["queue_pending"] == []


def test_links_must_point_at_a_node_output_of_the_right_type(start_node):
    node = start_node()
    graph = workflow()
    graph["3"]["inputs"]["positive"] = ["4", 0]  # MODEL, not CONDITIONING
    graph["8"]["inputs"]["vae"] = ["99", 0]
    data = requests.post(f"{node.url}/prompt", json={"prompt": graph}, timeout=5).json()
    errors = {e["type"] for entry in data["node_errors"].values() for e in entry["errors"]}
    assert errors == {"return_type_mismatch", "bad_linked_input"}


def test_fail_and_reject_hooks_are_execution_errors_told_apart(start_node):
    node = start_node()
    failed = wait_history(node, post(node, "boom [fail]").json()["prompt_id"])
    rejected = wait_history(node, post(node, "nope [reject]").json()["prompt_id"])
    for entry in (failed, rejected):
        assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)
        assert events(entry) == ["execution_start", "execution_cached", "execution_error"]
        assert entry["outputs"] == {}
    fail = failed["status"]["messages"][-1][1]
    assert fail["exception_type"] == "RuntimeError"
    assert (fail["node_type"], fail["node_id"]) == ("KSampler", "3")
    assert "GPU failure" in fail["exception_message"]
    reject = rejected["status"]["messages"][-1][1]
    assert reject["exception_type"].rsplit(".", 1)[-1] == "PromptRejected"
    assert reject["node_type"] == "CLIPTextEncode"
    assert {"timestamp", "prompt_id", "traceback", "executed"} <= set(reject)


def test_failure_rate_fails_prompts(start_node):
    node = start_node(failure_rate=1.0)
    entry = wait_history(node, post(node).json()["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][1]["exception_type"] == "RuntimeError"


def test_one_worker_runs_one_prompt_at_a_time_in_order(start_node):
    node = start_node(mean_s=0.5)
    ids = [post(node, f"cat {i}").json()["prompt_id"] for i in range(3)]
    queue = requests.get(f"{node.url}/queue", timeout=5).json()
    assert len(queue["queue_running"]) == 1
    assert [item[1] for item in queue["queue_pending"]] == ids[1:]
    assert requests.get(f"{node.url}/prompt", timeout=5).json()["exec_info"] == {
        "queue_remaining": 3
    }
    windows = []
    for prompt_id in ids:
        messages = wait_history(node, prompt_id)["status"]["messages"]
        windows.append((messages[0][1]["timestamp"], messages[-1][1]["timestamp"]))
    assert windows == sorted(windows)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start >= end  # never two at once


def test_more_workers_run_prompts_concurrently(start_node):
    node = start_node(mean_s=1.0, workers=2)
    for i in range(3):
        post(node, f"cat {i}")
    time.sleep(0.1)
    queue = requests.get(f"{node.url}/queue", timeout=5).json()
    assert (len(queue["queue_running"]), len(queue["queue_pending"])) == (2, 1)


def test_cold_start_after_idle(start_node):
    node = start_node(mean_s=0.05, cold_start_s=0.4, idle_before_cold_s=0.3)

    def duration_ms(text):
        messages = wait_history(node, post(node, text).json()["prompt_id"])["status"]["messages"]
        return messages[-1][1]["timestamp"] - messages[0][1]["timestamp"]

    assert duration_ms("first") >= 400  # never ran: cold
    assert duration_ms("warm") < 300
    time.sleep(0.5)
    assert duration_ms("idle again") >= 400


def test_a_client_chosen_prompt_id_posted_twice_is_queued_twice_as_on_a_real_node(start_node):
    node = start_node(mean_s=0.3)
    first = post(node, prompt_id="job-1-attempt-1").json()
    again = post(node, prompt_id="job-1-attempt-1").json()
    assert first["prompt_id"] == again["prompt_id"] == "job-1-attempt-1"
    assert again["number"] == first["number"] + 1  # no de-duplication: a client must ask first
    assert node.node.stats["prompts queued"] == 2


def test_pending_prompts_can_be_deleted_and_running_ones_interrupted(start_node):
    node = start_node(mean_s=5)
    running = post(node, "a").json()["prompt_id"]
    pending = post(node, "b").json()["prompt_id"]
    assert requests.post(f"{node.url}/queue", json={"delete": [pending]}, timeout=5).ok
    assert requests.post(f"{node.url}/interrupt", json={"prompt_id": running}, timeout=5).ok
    entry = wait_history(node, running, timeout=3)
    assert events(entry)[-1] == "execution_interrupted"
    assert entry["status"]["status_str"] == "error"
    assert requests.get(f"{node.url}/history/{pending}", timeout=5).json() == {}
    assert requests.get(f"{node.url}/queue", timeout=5).json()["queue_pending"] == []


def test_flaky_http_answers_503_before_handling(start_node):
    node = start_node(flaky_http_rate=1.0)
    resp = post(node)
    assert resp.status_code == 503
    assert node.node.stats["prompts queued"] == 0
    assert requests.get(f"{node.url}/queue", timeout=5).status_code == 503
    assert node.node.stats["flaky"] == 2


def test_fault_injection_can_be_limited_to_some_routes(start_node):
    node = start_node(flaky_http_rate=1.0, flaky_http_status=429, fault_routes=("GET /queue",))
    assert post(node).status_code == 200
    assert requests.get(f"{node.url}/queue", timeout=5).status_code == 429


def test_a_dropped_response_is_handled_but_never_answered(start_node):
    node = start_node(drop_response_rate=1.0, fault_routes=("POST /prompt",))
    with pytest.raises(requests.ConnectionError):
        post(node, prompt_id="lost-answer")
    assert node.node.stats["prompts queued"] == 1
    assert wait_history(node, "lost-answer")["status"]["status_str"] == "success"


def test_each_kind_of_fault_can_have_its_routes_and_a_limit(start_node):
    node = start_node(
        drop_response_rate=1.0,
        drop_routes=("POST /prompt",),
        drop_limit=1,
        flaky_http_rate=1.0,
        flaky_routes=("GET /queue",),
        flaky_limit=2,
    )
    with pytest.raises(requests.ConnectionError):
        post(node)
    assert post(node).status_code == 200  # the one drop was used
    statuses = [requests.get(f"{node.url}/queue", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (node.node.stats["dropped"], node.node.stats["flaky"]) == (1, 2)


def test_node_config_rejects_nonsense():
    with pytest.raises(ValueError):
        gpu_node.NodeConfig(pool="a100", failure_rate=2)
    with pytest.raises(ValueError):
        gpu_node.NodeConfig(pool="a100", workers=0)
    assert gpu_node.NodeConfig(pool="l4").name == "l4-node-1"


# --- Held to a real ComfyUI (v0.3.64) ------------------------------------------------------------
# The node classes are the real `GET /object_info` (devtools/gpu_node/object_info.json, all 491),
# and real recorded answers (tests/devtools/comfyui/) are reproduced over HTTP: audio outputs,
# the execution cache, file naming, installed checkpoints, required inputs, INT conversion.

RECORDED = Path(__file__).parent / "comfyui"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def run(node, graph: dict, **body) -> dict:
    resp = requests.post(f"{node.url}/prompt", json={"prompt": graph, **body}, timeout=5)
    assert resp.status_code == 200, resp.text
    return wait_history(node, resp.json()["prompt_id"])


def test_the_node_classes_are_the_491_of_a_real_node_served_on_object_info(start_node):
    # The recorded GET /object_info of a real ComfyUI 0.3.64, every class, unedited.
    assert len(object_info()) == 491 and set(NODE_TYPES) == set(object_info())
    node = start_node(checkpoints=("sdxl.safetensors",))
    served = requests.get(f"{node.url}/object_info", timeout=5).json()
    assert set(served) == set(object_info())
    assert served["KSampler"] == object_info()["KSampler"]
    # The node's installed checkpoints are its ckpt_name choices (none on the recording node).
    assert object_info()["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == []
    loader = requests.get(f"{node.url}/object_info/CheckpointLoaderSimple", timeout=5).json()
    assert loader["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "sdxl.safetensors"
    ]
    ksampler = NODE_TYPES["KSampler"]
    assert ksampler["required"]["steps"] == (
        "INT",
        object_info()["KSampler"]["input"]["required"]["steps"][1],
    )
    assert ksampler["outputs"] == ("LATENT",) and not ksampler["output_node"]
    assert NODE_TYPES["SaveAudio"]["output_node"]


def errors_of(data) -> dict:
    return {
        (nid, e["extra_info"].get("input_name")): e["type"]
        for nid, entry in data["node_errors"].items()
        for e in entry["errors"]
    }


def test_every_class_is_validated_against_its_recorded_types(start_node):
    # Classes the simulator does not execute itself are held to the recording too: LoraLoader's
    # strengths (-100..100), SaveVideo's COMBO options, CreateVideo's optional AUDIO input.
    node = start_node()
    graph = workflow()
    graph["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": "any.safetensors",  # a file list the recording node had empty
            "strength_model": 200,
            "strength_clip": "1.5",  # converted with float(), as ComfyUI does
        },
    }
    graph["3"]["inputs"]["model"] = ["10", 0]
    graph["11"] = {
        "class_type": "CreateVideo",
        "inputs": {"images": ["8", 0], "fps": 24, "audio": ["4", 2]},  # VAE is not AUDIO
    }
    graph["12"] = {
        "class_type": "SaveVideo",
        "inputs": {"video": ["11", 0], "filename_prefix": "v", "format": "gif", "codec": "auto"},
    }
    data = requests.post(f"{node.url}/prompt", json={"prompt": graph}, timeout=5).json()
    assert errors_of(data) == {
        ("10", "strength_model"): "value_bigger_than_max",
        ("11", "audio"): "return_type_mismatch",
        ("12", "format"): "value_not_in_list",
    }
    # Both outputs depend on the LoRA: nothing runs.
    assert data["error"]["type"] == "prompt_outputs_failed_validation"
    graph["10"]["inputs"]["strength_model"] = 0.8
    graph["11"]["inputs"]["audio"] = ["13", 0]
    graph["13"] = {
        "class_type": "EmptyAudio",
        "inputs": {"duration": 2.0, "sample_rate": 44100, "channels": 2},
    }
    graph["12"]["inputs"]["format"] = "mp4"
    entry = run(node, graph)
    assert entry["prompt"][2]["10"]["inputs"]["strength_clip"] == 1.5
    # A video is listed under "images" with "animated", as ComfyUI's SaveVideo reports it.
    video = entry["outputs"]["12"]
    assert video["animated"] == [True]
    assert video["images"][0]["filename"] == "v_00001_.mp4"


def test_an_output_node_that_writes_no_file_reports_nothing(start_node):
    # SaveImageWebsocket sends its images over the websocket: a real node's history lists no
    # file for it (the backend must not charge for such a run).
    graph = workflow()
    graph["9"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}}
    entry = run(start_node(), graph)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"] == {}


def test_a_literal_where_a_link_is_due_passes_validation_and_fails_at_run_time(start_node):
    graph = workflow()
    graph["8"]["inputs"]["vae"] = "not a VAE"
    entry = run(start_node(), graph)  # accepted, as a real node accepts it
    assert entry["status"]["status_str"] == "error"
    error = entry["status"]["messages"][-1][1]
    assert (error["node_type"], error["node_id"]) == ("VAEDecode", "8")


def test_system_stats_have_every_key_a_real_node_answers(start_node):
    real = recorded("system_stats.json")
    ours = requests.get(f"{start_node().url}/system_stats", timeout=5).json()
    assert set(real) == set(ours)
    assert set(real["system"]) <= set(ours["system"])
    assert set(real["devices"][0]) <= set(ours["devices"][0])


def test_audio_outputs_are_listed_under_audio_as_on_a_real_node(start_node):
    ((_, real),) = recorded("history_audio.json").items()
    graph, extra_data = real["prompt"][2], real["prompt"][3]
    entry = run(start_node(), graph, **extra_data)
    assert set(entry) == set(real)
    assert entry["prompt"][2:] == real["prompt"][2:]
    assert entry["outputs"] == real["outputs"]  # {"2": {"audio": [job-audio_00001_.flac ...]}}
    assert entry["meta"] == real["meta"]
    assert events(entry) == events(real)
    assert entry["status"]["status_str"] == real["status"]["status_str"]


def test_the_same_graph_twice_is_answered_from_the_cache_with_the_first_file(start_node):
    real = recorded("history_image_cached.json")
    ((_, real_first),) = real["first"].items()
    ((_, real_second),) = real["second"].items()
    node = start_node()
    graph, extra_data = real_first["prompt"][2], real_first["prompt"][3]
    first = run(node, graph, **extra_data)
    second = run(node, graph, **extra_data)
    for ours, theirs in ((first, real_first), (second, real_second)):
        assert ours["outputs"] == theirs["outputs"]  # both shared_00001_.png in gpucredits/
        assert ours["meta"] == theirs["meta"]
        assert events(ours) == events(theirs)
        cached = [data for event, data in ours["status"]["messages"] if event == "execution_cached"]
        real_cached = [
            data for event, data in theirs["status"]["messages"] if event == "execution_cached"
        ]
        assert cached[0]["nodes"] == real_cached[0]["nodes"]  # [] then ["1", "2"]
    file = first["outputs"]["2"]["images"][0]
    view = requests.get(
        f"{node.url}/view", params={"filename": file["filename"], "subfolder": "gpucredits"}
    )
    assert view.status_code == 200 and view.content.startswith(b"\x89PNG")


def test_ckpt_name_must_name_an_installed_checkpoint(start_node):
    node = start_node(checkpoints=("sdxl.safetensors",))
    assert run(node, workflow())["status"]["status_str"] == "success"
    graph = workflow()
    graph["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    data = requests.post(f"{node.url}/prompt", json={"prompt": graph}, timeout=5).json()
    (error,) = data["node_errors"]["4"]["errors"]
    assert (error["type"], error["extra_info"]["input_name"]) == ("value_not_in_list", "ckpt_name")


def test_filename_prefix_is_required(start_node):
    graph = workflow()
    del graph["9"]["inputs"]["filename_prefix"]
    data = requests.post(f"{start_node().url}/prompt", json={"prompt": graph}, timeout=5).json()
    (error,) = data["node_errors"]["9"]["errors"]
    assert (error["type"], error["details"]) == ("required_input_missing", "filename_prefix")


def test_an_int_input_given_a_fraction_is_truncated_not_refused(start_node):
    graph = recorded("history_image_cached.json")["first"]
    ((_, real),) = graph.items()
    graph = json.loads(json.dumps(real["prompt"][2]))
    graph["1"]["inputs"]["width"] = 64.5
    entry = run(start_node(), graph)
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 64


# --- The management command -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_gpu_node_command_serves_and_stops_gracefully_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_gpu_node",
            "--pool",
            "l4",
            "--port",
            str(port),
            "--name",
            "l4-node-9",
            "--mean-s",
            "0.05",
        ],
        cwd=BASE_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first == f"GPU node l4-node-9 (pool l4) listening on http://127.0.0.1:{port}\n"
        url = f"http://127.0.0.1:{port}"
        stats = requests.get(f"{url}/system_stats", timeout=5).json()
        assert (stats["system"]["node_name"], stats["system"]["pool"]) == ("l4-node-9", "l4")
        prompt_id = requests.post(f"{url}/prompt", json={"prompt": workflow()}, timeout=5).json()[
            "prompt_id"
        ]
        deadline = time.monotonic() + 10
        while not requests.get(f"{url}/history/{prompt_id}", timeout=5).json():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "GPU node l4-node-9 stopped" in output


def test_run_gpu_node_command_refuses_bad_options_and_busy_ports():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "run_gpu_node", "--pool", "a100", "--port", str(port)],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    result = subprocess.run(
        [sys.executable, "manage.py", "run_gpu_node", "--pool", "a100", "--failure-rate", "2"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--failure-rate" in result.stderr
