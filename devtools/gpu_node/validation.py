"""ComfyUI's prompt validation (`validate_prompt`, as in ComfyUI 0.3.64's execution.py) for every
node class of a real node, with ComfyUI's error shapes.

The node classes are those of a real ComfyUI 0.3.64: `object_info.json` is its `GET /object_info`
answer, recorded unedited (491 classes). A class's inputs are validated as ComfyUI validates
them: required inputs present, links `[node_id, slot]` to an output of a matching type (`*` and
comma-separated unions match as in ComfyUI), literal INT / FLOAT / STRING / BOOLEAN values
converted with int() / float() / str() / bool() (so 64.5 is 64 for an INT), then held to
`min` / `max`, and choices (a list, or `COMBO` with `options`) held to their values. A choice
of files the recording node did not have (its list is empty: `ckpt_name`, `lora_name`, …)
takes the node's installed checkpoints for `ckpt_name` and any name otherwise.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

OBJECT_INFO_PATH = Path(__file__).with_name("object_info.json")
PRIMITIVES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
COMBO = "COMBO"


@cache
def object_info() -> dict[str, dict]:
    """The recorded `GET /object_info` of a real ComfyUI 0.3.64, class name → its entry."""
    return json.loads(OBJECT_INFO_PATH.read_text())


def _spec(entry: dict) -> dict:
    def inputs(category: str) -> dict[str, tuple]:
        declared = (entry.get("input") or {}).get(category) or {}
        return {
            name: (spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            for name, spec in declared.items()
        }

    return {
        "required": inputs("required"),
        "optional": inputs("optional"),
        "outputs": tuple(entry.get("output") or ()),
        "output_node": bool(entry.get("output_node")),
    }


@cache
def node_types() -> dict[str, dict]:
    """Every node class: {"required": {input: (type, options)}, "optional": {...},
    "outputs": (type, ...), "output_node": bool}, from the recorded /object_info."""
    return {name: _spec(entry) for name, entry in object_info().items()}


NODE_TYPES: dict[str, dict] = node_types()


def error_body(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def types_match(received, expected) -> bool:
    """ComfyUI's validate_node_input: equal, a `*` on either side, or overlapping unions."""
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    wanted = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in wanted or not got.isdisjoint(wanted)


def validate_prompt(
    prompt, *, checkpoints: tuple[str, ...] | None = None
) -> tuple[bool, dict | None, list[str], dict]:
    """(valid, error, output node ids to execute, node_errors), as ComfyUI's validate_prompt:
    a prompt is valid when at least one output node validates; node_errors lists the nodes
    with errors and the outputs that depend on them. Literal values are converted in place,
    as ComfyUI does. `checkpoints`: the installed checkpoint files a `ckpt_name` must name
    (None: any name)."""
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
        if not isinstance(node["class_type"], str) or node["class_type"] not in NODE_TYPES:
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
    outputs = [nid for nid, n in prompt.items() if NODE_TYPES[n["class_type"]]["output_node"]]
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
    declared = [(name, s, True) for name, s in spec["required"].items()]
    declared += [(name, s, False) for name, s in spec["optional"].items()]
    for name, (type_, options), required in declared:
        info = {"input_name": name}
        if name not in inputs:
            if required:
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
            if not types_match(received, type_):
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
        if isinstance(type_, list) and not type_:
            # A choice of files the recording node did not have.
            if name == "ckpt_name" and checkpoints is not None:
                type_ = list(checkpoints)
            else:
                continue
        problem = _check_value(name, value, type_, options)
        if isinstance(problem, dict):
            errors.append(problem)
        else:
            inputs[name] = problem  # converted, as ComfyUI does


def _check_value(name, value, type_, options):
    """The converted value, or an error dict (ComfyUI's validate_inputs for a literal)."""
    info = {"input_name": name, "received_value": value}
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]  # ComfyUI's wrapper for a list given as a value
    try:
        if type_ == "INT":
            value = int(value)
        elif type_ == "FLOAT":
            value = float(value)
        elif type_ == "STRING":
            value = str(value)
        elif type_ == "BOOLEAN":
            value = bool(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return error_body(
            "invalid_input_type",
            f"Failed to convert an input {name} value to a {type_} value",
            f"{name}, {value}, {exc}",
            {**info, "exception_message": str(exc)},
        )
    try:
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
    except TypeError as exc:  # a literal where a link was due, compared with a number
        return error_body(
            "invalid_input_type",
            f"Failed to convert an input {name} value to a {type_} value",
            f"{name}, {value}, {exc}",
            {**info, "exception_message": str(exc)},
        )
    if isinstance(type_, list) or type_ == COMBO:
        choices = type_ if isinstance(type_, list) else options.get("options", [])
        if value not in choices:
            shown = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
            return error_body(
                "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}", info
            )
    return value
