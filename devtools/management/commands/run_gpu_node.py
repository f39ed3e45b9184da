"""`manage.py run_gpu_node --pool POOL --port PORT [options]`: a simulated GPU node speaking
ComfyUI's HTTP API (see devtools/gpu_node/), for the `comfyui` backend in development and
tests (installed by the local and test settings only). Serves until Ctrl-C / SIGTERM.

Example: manage.py run_gpu_node --pool a100 --port 8188
         GPU node a100-node-1 (pool a100) listening on http://127.0.0.1:8188 ...
"""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from devtools import gpu_node


def rate(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError(value)
    return number


def non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Run a simulated GPU node with ComfyUI's HTTP API (POST /prompt, GET /history/{id})."

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True, help="Node pool slug, e.g. a100.")
        parser.add_argument("--port", type=int, default=8188)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--name", default="", help="Node name (default: <pool>-node-1).")
        parser.add_argument(
            "--mean-s", type=non_negative, default=1.0, help="Mean service time (log-normal)."
        )
        parser.add_argument("--sigma", type=non_negative, default=0.25, help="Log-normal shape.")
        parser.add_argument("--failure-rate", type=rate, default=0.0, help="0-1.")
        parser.add_argument(
            "--cold-start-s", type=non_negative, default=0.0, help="Delay after an idle period."
        )
        parser.add_argument(
            "--idle-before-cold-s",
            type=non_negative,
            default=300.0,
            help="Idle time after which the next prompt pays the cold start.",
        )
        parser.add_argument(
            "--workers", type=int, default=1, help="Prompts run at once (a GPU runs one)."
        )
        parser.add_argument(
            "--flaky-http-rate",
            type=rate,
            default=0.0,
            help="Fault injection: share of requests answered with --flaky-http-status.",
        )
        parser.add_argument("--flaky-http-status", type=int, default=503)
        parser.add_argument(
            "--drop-response-rate",
            type=rate,
            default=0.0,
            help="Fault injection: share of requests handled but left unanswered.",
        )
        parser.add_argument(
            "--fault-route",
            action="append",
            default=[],
            dest="fault_routes",
            help='Limit fault injection to this route, e.g. "POST /prompt" (repeatable).',
        )
        parser.add_argument("--random-seed", type=int, default=None)
        parser.add_argument(
            "--checkpoint",
            action="append",
            default=None,
            dest="checkpoints",
            help="A checkpoint file installed on the node (repeatable); a ckpt_name must name "
            "one. Default: any name is accepted.",
        )

    def handle(self, *args, **opts):
        verbosity = opts["verbosity"]
        logging.getLogger(gpu_node.__name__).setLevel(
            logging.WARNING if verbosity == 0 else logging.INFO
        )
        try:
            config = gpu_node.NodeConfig(
                pool=opts["pool"],
                name=opts["name"],
                host=opts["host"],
                port=opts["port"],
                mean_s=opts["mean_s"],
                sigma=opts["sigma"],
                failure_rate=opts["failure_rate"],
                cold_start_s=opts["cold_start_s"],
                idle_before_cold_s=opts["idle_before_cold_s"],
                workers=opts["workers"],
                flaky_http_rate=opts["flaky_http_rate"],
                flaky_http_status=opts["flaky_http_status"],
                drop_response_rate=opts["drop_response_rate"],
                fault_routes=tuple(opts["fault_routes"]),
                random_seed=opts["random_seed"],
                checkpoints=tuple(opts["checkpoints"]) if opts["checkpoints"] else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            gpu_node.serve(config, out=out, verbose=verbosity >= 2)
        except OSError as exc:
            raise CommandError(
                f"GPU node {config.name} cannot listen on {config.host}:{config.port}: {exc}"
            ) from None
