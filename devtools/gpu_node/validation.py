"""ComfyUI's prompt validation (`validate_prompt`), for the node classes this node knows, with
ComfyUI's error shapes."""

from __future__ import annotations

# As a real ComfyUI 0.3.64 lists them (GET /object_info).
SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]

# The node classes this node knows, as a real ComfyUI declares them (INPUT_TYPES / RETURN_TYPES,
# every input required; held to a recorded GET /object_info by tests/devtools): inputs (type,
# options) and output types. A type that is a list is a choice; CHECKPOINT is the choice of the
# node's installed checkpoint files; links carry the other upper-case types.
NODE_TYPES: dict[str, dict] = {
    "CheckpointLoaderSimple": {
        "inputs": {"ckpt_name": ("CHECKPOINT", {})},
        "outputs": ("MODEL", "CLIP", "VAE"),
    },
    "CLIPTextEncode": {
        "inputs": {"text": ("STRING", {}), "clip": ("CLIP", {})},
        "outputs": ("CONDITIONING",),
    },
    "EmptyLatentImage": {
        "inputs": {
            "width": ("INT", {"min": 16, "max": 16384}),
            "height": ("INT", {"min": 16, "max": 16384}),
            "batch_size": ("INT", {"min": 1, "max": 4096}),
        },
        "outputs": ("LATENT",),
    },
    "KSampler": {
        "inputs": {
            "model": ("MODEL", {}),
            "seed": ("INT", {"min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": ("INT", {"min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"min": 0.0, "max": 100.0}),
            "sampler_name": (SAMPLERS, {}),
            "scheduler": (SCHEDULERS, {}),
            "positive": ("CONDITIONING", {}),
            "negative": ("CONDITIONING", {}),
            "latent_image": ("LATENT", {}),
            "denoise": ("FLOAT", {"min": 0.0, "max": 1.0}),
        },
        "outputs": ("LATENT",),
    },
    "VAEDecode": {
        "inputs": {"samples": ("LATENT", {}), "vae": ("VAE", {})},
        "outputs": ("IMAGE",),
    },
    "EmptyImage": {
        "inputs": {
            "width": ("INT", {"min": 1, "max": 16384}),
            "height": ("INT", {"min": 1, "max": 16384}),
            "batch_size": ("INT", {"min": 1, "max": 4096}),
            "color": ("INT", {"min": 0, "max": 0xFFFFFF}),
        },
        "outputs": ("IMAGE",),
    },
    "SaveImage": {
        "inputs": {"images": ("IMAGE", {}), "filename_prefix": ("STRING", {})},
        "outputs": (),
        "output_node": True,
    },
    "PreviewImage": {
        "inputs": {"images": ("IMAGE", {})},
        "outputs": (),
        "output_node": True,
    },
    "EmptyAudio": {
        "inputs": {
            "duration": ("FLOAT", {"min": 0.0, "max": 0xFFFFFFFFFFFFFFFF}),
            "sample_rate": ("INT", {}),
            "channels": ("INT", {"min": 1, "max": 2}),
        },
        "outputs": ("AUDIO",),
    },
    "SaveAudio": {
        "inputs": {"audio": ("AUDIO", {}), "filename_prefix": ("STRING", {})},
        "outputs": (),
        "output_node": True,
    },
}
LINK_TYPES = {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "AUDIO"}


def error_body(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def validate_prompt(
    prompt, *, checkpoints: tuple[str, ...] | None = None
) -> tuple[bool, dict | None, list[str], dict]:
    """(valid, error, output node ids to execute, node_errors), as ComfyUI's validate_prompt:
    a prompt is valid when at least one output node validates; node_errors lists the nodes
    with errors and the outputs that depend on them. `checkpoints`: the installed checkpoint
    files a `ckpt_name` must name (None: any name)."""
    if not isinstance(prompt, dict) or not prompt:
        return (
            False,
            error_body("invalid_prompt", "Prompt must be a non-empty object of nodes.", ""),
            [],
            {},
        )
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return (
                False,
                error_body(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
        if node["class_type"] not in NODE_TYPES:
            return (
                False,
                error_body(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
    outputs = [nid for nid, n in prompt.items() if NODE_TYPES[n["class_type"]].get("output_node")]
    if not outputs:
        return False, error_body("prompt_no_outputs", "Prompt has no outputs"), [], {}

    errors_by_node: dict[str, list[dict]] = {}
    reachable: dict[str, set[str]] = {}
    for output in outputs:
        seen: set[str] = set()
        _validate_node(prompt, output, errors_by_node, seen, (), checkpoints)
        reachable[output] = seen
    node_errors: dict[str, dict] = {}
    good: list[str] = []
    lines: list[str] = []
    for output in outputs:
        bad = [nid for nid in reachable[output] if errors_by_node.get(nid)]
        if not bad:
            good.append(output)
            continue
        for nid in sorted(bad):
            entry = node_errors.setdefault(
                nid,
                {
                    "errors": errors_by_node[nid],
                    "dependent_outputs": [],
                    "class_type": prompt[nid]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
            if len(entry["dependent_outputs"]) == 1:
                lines += [f"{e['message']}: {e['details']}" for e in errors_by_node[nid]]
    if not good:
        error = error_body(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", "\n".join(lines)
        )
        return False, error, [], node_errors
    return True, None, good, node_errors


def _validate_node(prompt, node_id, errors_by_node, seen, stack, checkpoints) -> None:
    if node_id in seen:
        return
    seen.add(node_id)
    node = prompt[node_id]
    spec = NODE_TYPES[node["class_type"]]
    inputs = node.get("inputs", {})
    errors: list[dict] = []
    errors_by_node[node_id] = errors
    if not isinstance(inputs, dict):
        errors.append(error_body("invalid_inputs", "Node inputs must be an object", f"{node_id}"))
        return
    for name, (type_, options) in spec["inputs"].items():
        info = {"input_name": name}
        if name not in inputs:
            errors.append(
                error_body("required_input_missing", "Required input is missing", name, info)
            )
            continue
        value = inputs[name]
        if isinstance(value, list):
            if (
                len(value) != 2
                or not isinstance(value[0], str)
                or value[0] not in prompt
                or not isinstance(value[1], int)
            ):
                errors.append(
                    error_body(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                        {**info, "received_value": value},
                    )
                )
                continue
            linked_id, slot = value
            returns = NODE_TYPES[prompt[linked_id]["class_type"]]["outputs"]
            received = returns[slot] if 0 <= slot < len(returns) else None
            if received != type_:
                errors.append(
                    error_body(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({type_})",
                        {**info, "received_type": received, "linked_node": value},
                    )
                )
                continue
            if linked_id in stack or linked_id == node_id:
                errors.append(
                    error_body("dependency_cycle", "Dependency cycle detected", name, info)
                )
                continue
            _validate_node(prompt, linked_id, errors_by_node, seen, (*stack, node_id), checkpoints)
            continue
        if type_ == "CHECKPOINT":
            type_ = list(checkpoints) if checkpoints is not None else "STRING"
        problem = _check_value(name, value, type_, options)
        if isinstance(problem, dict):
            errors.append(problem)
        else:
            inputs[name] = problem  # converted, as ComfyUI does


def _check_value(name, value, type_, options):
    """The converted value, or an error dict."""
    info = {"input_name": name, "received_value": value}
    if isinstance(type_, list):
        if value not in type_:
            return error_body(
                "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {type_}", info
            )
        return value
    if type_ in LINK_TYPES:
        return error_body(
            "invalid_input_type",
            f"Failed to convert an input value to a {type_} value",
            f"{name}, {value}",
            info,
        )
    try:
        # ComfyUI converts with int() / float() / str(): 64.5 is 64 for an INT, not an error.
        if type_ == "INT":
            value = int(value)
        elif type_ == "FLOAT":
            value = float(value)
        elif type_ == "STRING":
            value = str(value)
    except (TypeError, ValueError) as exc:
        return error_body(
            "invalid_input_type",
            f"Failed to convert an input value to a {type_} value",
            f"{name}, {value}, {exc}",
            {**info, "exception_message": str(exc)},
        )
    if "min" in options and value < options["min"]:
        return error_body(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {options['min']}",
            name,
            info,
        )
    if "max" in options and value > options["max"]:
        return error_body(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {options['max']}",
            name,
            info,
        )
    return value
