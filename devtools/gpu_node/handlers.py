"""The HTTP routes of the simulated node (ComfyUI's, also served under `/api`), with fault
injection (flaky statuses, dropped responses)."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from devtools.gpu_node.validation import error_body
from generations.backends.placeholders import solid_png

if TYPE_CHECKING:
    from devtools.gpu_node.server import GpuNodeServer

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
# What /view serves for a saved audio file: the FLAC signature and an empty STREAMINFO block.
FLAC_BYTES = b"fLaC" + b"\x80\x00\x00\x22" + bytes(34)


def png_bytes(rgb: int, size: int = 8) -> bytes:
    """A solid-colour PNG, size × size."""
    return solid_png(((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255), size)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's session reuses its connection
    server: GpuNodeServer
    server_version = "GpuNode/1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds

    def setup(self):
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format, *args):
        if self.server.verbose:
            name = self.server.node.config.name
            logger.info("%s: %s %s", name, self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        node = self.server.node
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if path == "/api" or path.startswith("/api/"):
            path = path[4:] or "/"
        body = None
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self._send(413, {"error": "request body too large or unreadable"}, close=True)
                return
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except (ValueError, UnicodeDecodeError):
                body = _INVALID_JSON
        route = path
        for prefix in ("/history/", "/object_info/"):
            if path.startswith(prefix):
                route = prefix + "{id}"
        node.count(f"{method} {route}")
        if node.fault("flaky", f"{method} {route}"):
            status = node.config.flaky_http_status
            self._send(status, {"error": f"simulated transient failure ({status})"})
            return
        try:
            status, payload = self._route(method, path, parse_qs(parts.query), body)
        except Exception:
            logger.exception("%s: %s %s failed", node.config.name, method, self.path)
            status, payload = 500, {"error": "internal error"}
        if node.fault("dropped", f"{method} {route}"):
            self.close_connection = True  # handled, but the answer is lost
            return
        if isinstance(payload, bytes):
            kind = "application/octet-stream"
            if payload.startswith(b"fLaC"):
                kind = "audio/flac"
            elif payload.startswith(b"\x89PNG"):
                kind = "image/png"
            self._send_bytes(status, payload, kind)
        else:
            self._send(status, payload)

    def _route(self, method: str, path: str, query: dict, body):
        node = self.server.node
        if body is _INVALID_JSON:
            error = error_body("invalid_json", "The request body is not valid JSON")
            return 400, {"error": error, "node_errors": {}}
        if method == "GET":
            if path == "/history":
                max_items = query.get("max_items", [None])[0]
                try:
                    max_items = int(max_items) if max_items is not None else None
                except ValueError:
                    return 400, {"error": "max_items must be an integer"}
                return 200, node.history(max_items=max_items)
            if path.startswith("/history/"):
                return 200, node.history(prompt_id=path[len("/history/") :])
            if path == "/queue":
                return 200, node.queue()
            if path == "/prompt":
                return 200, {"exec_info": {"queue_remaining": node.queue_remaining()}}
            if path == "/system_stats":
                return 200, node.system_stats()
            if path == "/view":
                filename = query.get("filename", [""])[0]
                seed = node.file_seed(filename, query.get("subfolder", [""])[0])
                if seed is None:
                    return 404, {"error": "not found"}
                if filename.endswith(".png"):
                    return 200, png_bytes(seed)
                return 200, FLAC_BYTES if filename.endswith(".flac") else b"\0" * 16
            if path == "/object_info":
                return 200, node.object_info()
            if path.startswith("/object_info/"):
                name = path[len("/object_info/") :]
                info = node.object_info()
                return 200, {name: info[name]} if name in info else {}
            return 404, {"error": "not found"}
        if path == "/prompt":
            return node.submit(body)
        if not isinstance(body, dict):
            return 400, {"error": "expected a JSON object"}
        if path == "/queue":
            if body.get("clear"):
                node.clear_pending()
            if body.get("delete"):
                node.delete_pending(body["delete"])
            return 200, {}
        if path == "/interrupt":
            node.interrupt(body.get("prompt_id"))
            return 200, {}
        if path == "/history":
            node.delete_history(body.get("delete"), clear=bool(body.get("clear")))
            return 200, {}
        return 404, {"error": "not found"}

    def _send(self, status: int, payload, *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json", close=close)

    def _send_bytes(self, status: int, data: bytes, content_type: str, close=False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


_INVALID_JSON = object()
