"""The REST port: Prometheus /metrics and TF Serving's model status route.

GET /metrics                              Prometheus text format
GET /v1/models/<name>                     TF Serving's status JSON
GET /v1/models/<name>/versions/<version>  the same for one version
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from servelab.refserver.metrics import ServerMetrics
from servelab.refserver.models import ModelRegistry, ServingError, State


def status_json(registry: ModelRegistry, name: str, version: int | None) -> dict:
    """TF Serving's GetModelStatus JSON for a model; ServingError if it is not served."""
    model = registry.find(name, version)
    failed = model.state is State.END and bool(model.error)
    return {
        "model_version_status": [
            {
                "version": str(model.version),
                "state": model.state.name,
                "status": {
                    "error_code": "UNKNOWN" if failed else "OK",
                    "error_message": model.error,
                },
            }
        ]
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: ModelRegistry
    metrics: ServerMetrics


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "refserver"
    protocol_version = "HTTP/1.1"

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, document: dict) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/metrics":
            self._send(
                HTTPStatus.OK, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST
            )
            return
        parts = [unquote(p) for p in path.split("/")[1:]]
        if len(parts) in (3, 5) and parts[:2] == ["v1", "models"]:
            version = None
            if len(parts) == 5:
                if parts[3] != "versions" or not parts[4].isdigit():
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})
                    return
                version = int(parts[4])
            try:
                self._json(HTTPStatus.OK, status_json(self.server.registry, parts[2], version))
            except ServingError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": exc.message})
            return
        self._json(
            HTTPStatus.NOT_FOUND,
            {"error": f"no route {path or '/'}; try /metrics or /v1/models/<name>"},
        )

    do_HEAD = do_GET

    def log_message(self, format: str, *args) -> None:
        pass  # one line per scrape would drown the server's own log


def start_rest_server(
    bind_address: str, port: int, registry: ModelRegistry, metrics: ServerMetrics
) -> ThreadingHTTPServer:
    """Bind and serve in a daemon thread; OSError if the port cannot be bound."""
    server_class = type(
        "RestServer",
        (_Server,),
        {"address_family": socket.AF_INET6 if ":" in bind_address else socket.AF_INET},
    )
    server = server_class((bind_address, port), _Handler)
    server.registry = registry
    server.metrics = metrics
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
