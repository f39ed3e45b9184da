"""The simulated node's HTTP server: in background threads (`start`, for tests) or in the
foreground until SIGINT/SIGTERM (`serve`, the `run_gpu_node` command's body)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from http.server import ThreadingHTTPServer

from devtools.gpu_node.handlers import Handler
from devtools.gpu_node.simulation import GpuNode, NodeConfig

logger = logging.getLogger(__name__)


class GpuNodeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, node: GpuNode, *, verbose: bool = False) -> None:
        self.node = node
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((node.config.host, node.config.port), Handler)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away (or a connection closed by stop()): not news
        logger.exception("%s: error handling a request", self.node.config.name)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Close the open keep-alive connections too, as a stopped process would."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class RunningNode:
    """A node serving in background threads (tests, embedding): `.url`, `.node`, `.stop()`."""

    def __init__(self, config: NodeConfig, *, verbose: bool = False) -> None:
        self.node = GpuNode(config)
        self.server = GpuNodeServer(self.node, verbose=verbose)
        self.node.start()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{config.name}-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def name(self) -> str:
        return self.node.config.name

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.node.stop()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningNode:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(config: NodeConfig, *, verbose: bool = False) -> RunningNode:
    """Start a node in background threads (port 0 picks a free port; see `.url`)."""
    return RunningNode(config, verbose=verbose)


def serve(config: NodeConfig, *, out=print, verbose: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the command's body)."""
    stop = threading.Event()
    previous = {}

    def request_stop(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    try:
        running = start(config, verbose=verbose)
        c = config
        out(f"GPU node {c.name} (pool {c.pool}) listening on {running.url}")
        out(
            f"GPU node {c.name}: {c.workers} prompt{'s' if c.workers != 1 else ''} at a time, "
            f"mean service time {c.mean_s:g}s (sigma {c.sigma:g}), failure rate "
            f"{c.failure_rate:g}, cold start {c.cold_start_s:g}s after {c.idle_before_cold_s:g}s "
            "idle"
        )
        if c.flaky_http_rate or c.drop_response_rate:
            routes = ", ".join(c.fault_routes) or "all routes"
            out(
                f"GPU node {c.name}: fault injection on (flaky HTTP {c.flaky_http_rate:g} "
                f"→ {c.flaky_http_status}, dropped responses {c.drop_response_rate:g}; {routes})"
            )
        try:
            while not stop.wait(0.5):
                pass
        finally:
            out(f"GPU node {c.name} stopping")
            running.stop()
            out(f"GPU node {c.name} stopped")
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
