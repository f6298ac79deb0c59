"""The remote device agent: ``dwnas agent serve`` on the board, measuring models sent over HTTP.

Protocol (details in docs/measure.md)::

    POST /measure HTTP/1.1
    Authorization: Bearer <token>
    Content-Type: application/octet-stream
    Content-Length: <model bytes>
    Expect: 100-continue
    X-Dwnas-Request: {"format": "onnx", "resolution": 224, "settings": {...}}

    <model bytes>

The agent checks the token (constant-time), the size, the format and the settings from the
headers alone, answering 401 / 413 / 415 / 400 before a single body byte is read; only then
does it send ``100 Continue``. The model is checked by its magic bytes (zip for TorchScript,
protobuf field 1 for ONNX) and measured by ``python -m dwnas.measure.job`` in a subprocess with
a timeout (504 when it expires, 422 when the job reports an error). One measurement at a time:
a second request while one runs gets 503, since concurrent jobs would disturb each other's
timing. ``GET /health`` (token required) tells a client the agent is up.

Robustness: at most ``max_connections`` connections are served at once (further ones wait in a
128-deep listen backlog, not in threads); a request's headers must arrive within
``read_timeout_s`` and its body within a further second per MiB, however slowly the bytes
trickle; a request with two ``Content-Length`` headers or a ``Transfer-Encoding`` is refused.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dwnas.errors import DwnasError
from dwnas.measure.settings import MeasureSettings

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_JOB_TIMEOUT_S = 900.0
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_READ_TIMEOUT_S = 120.0
UPLOAD_BYTES_PER_S = 1 << 20  # slowest upload rate the body deadline allows for
REQUEST_HEADER = "X-Dwnas-Request"
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
UPLOADED_MODEL = "<uploaded model>"  # stands for the agent's temporary path in error messages


def read_token(path: str | Path) -> str:
    """The shared secret from a token file (surrounding whitespace ignored); never empty."""
    path = Path(path)
    try:
        token = path.read_text().strip()
    except FileNotFoundError as exc:
        raise DwnasError(f"{path}: token file not found") from exc
    except OSError as exc:
        raise DwnasError(f"{path}: cannot read token file ({exc})") from exc
    if not token:
        raise DwnasError(f"{path}: token file is empty")
    return token


def token_file_warning(path: str | Path) -> str | None:
    """A warning when the token file is readable by group or others."""
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"warning: {path} is readable by other users; chmod 600 it"
    return None


def sniff_format(head: bytes) -> str | None:
    """The model format its first bytes show, or None.

    TorchScript archives are zip files (``PK\\x03\\x04``). An ONNX file is a serialised
    ModelProto, whose writers put field 1 (ir_version, a varint: tag byte 0x08) first.
    """
    if head.startswith(b"PK\x03\x04"):
        return "torchscript"
    if head[:1] == b"\x08" and len(head) >= 2 and 1 <= head[1] <= 0x7F:
        return "onnx"
    return None


@dataclass
class AgentConfig:
    token: str
    max_bytes: int = DEFAULT_MAX_BYTES
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    device: str = "host"
    sysfs_root: str = "/"
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # connections served (threads) at once
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # deadline for a request's headers


class AgentServer(ThreadingHTTPServer):
    """HTTP server holding the agent's config, the one-job-at-a-time lock and the connection cap."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of health checks queues, not dropped

    def __init__(self, address: tuple[str, int], config: AgentConfig):
        if config.max_connections < 1:
            raise DwnasError(f"agent: max_connections must be >= 1 (got {config.max_connections})")
        super().__init__(address, AgentHandler)
        self.config = config
        self.job_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._stopping = threading.Event()

    def process_request(self, request, client_address) -> None:
        """Start a handler thread only once a slot is free; meanwhile accepting pauses, so
        further connections wait in the kernel's backlog instead of costing a thread each."""
        while not self._slots.acquire(timeout=0.2):
            if self._stopping.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._stopping.set()
        super().shutdown()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail once a deadline has passed: a per-recv timeout alone lets a
    client that sends one byte every few seconds hold a connection forever."""

    def __init__(self, sock, idle_timeout: float):
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.deadline = math.inf
        self.expired = False
        self.received = 0  # bytes since the last restart()

    def restart(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise TimeoutError("request not received within its deadline")
        self.sock.settimeout(min(remaining, self.idle_timeout))
        try:
            count = self.sock.recv_into(buffer)
            self.received += count
            return count
        except TimeoutError:
            self.expired = self.deadline <= time.monotonic()
            raise
        finally:
            self.sock.settimeout(self.idle_timeout)


class RequestRejected(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class AgentHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dwnas-agent/1"
    timeout = 120  # seconds one recv may wait; the whole request has a deadline too
    server: AgentServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        sys.stderr.write(f"agent {self.address_string()}: {format % args}\n")

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """Each request (keep-alive ones too) gets ``read_timeout_s`` for its headers; a late
        one is told 408, an idle keep-alive connection is just closed."""
        self._reader.restart(self.server.config.read_timeout_s)
        self._answered = False
        super().handle_one_request()
        if self._reader.expired:
            self.close_connection = True
        if self._reader.expired and self._reader.received and not self._answered:
            with contextlib.suppress(OSError):
                self.wfile.write(
                    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )

    def _reply(self, status: HTTPStatus, payload: dict, close: bool = True) -> None:
        body = (json.dumps(payload, allow_nan=False) + "\n").encode()
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="dwnas-agent"')
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        scheme, _, presented = self.headers.get("Authorization", "").partition(" ")
        expected = self.server.config.token.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), expected
        )

    def _check_headers(self) -> tuple[int, dict]:
        """Everything decidable before the body: (content length, request header)."""
        if self.path != "/measure" or self.command != "POST":
            raise RequestRejected(
                HTTPStatus.NOT_FOUND, f"no such endpoint: {self.command} {self.path}"
            )
        if not self._authorised():
            raise RequestRejected(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
        if "Transfer-Encoding" in self.headers:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not supported; send Content-Length"
            )
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            # two lengths are how a request is smuggled past a proxy that reads the other one
            raise RequestRejected(HTTPStatus.BAD_REQUEST, "more than one Content-Length header")
        if not lengths:
            raise RequestRejected(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if not re.fullmatch(r"[0-9]+", lengths[0].strip()):
            raise RequestRejected(HTTPStatus.BAD_REQUEST, "Content-Length is not an integer")
        length = int(lengths[0])
        if length <= 0:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, "empty model")
        if length > self.server.config.max_bytes:
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"model is {length} bytes; this agent accepts at most {self.server.config.max_bytes}",
            )
        try:
            request = json.loads(self.headers.get(REQUEST_HEADER, ""))
        except json.JSONDecodeError as exc:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST, f"{REQUEST_HEADER} is not JSON ({exc})"
            ) from exc
        if not isinstance(request, dict):
            raise RequestRejected(HTTPStatus.BAD_REQUEST, f"{REQUEST_HEADER} must be a JSON object")
        if request.get("format") not in SUFFIX:
            raise RequestRejected(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"unknown model format {request.get('format')!r}; expected one of {', '.join(SUFFIX)}",
            )
        resolution = request.get("resolution")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST, f"resolution must be a positive integer, got {resolution!r}"
            )
        try:
            settings = MeasureSettings.from_dict(request.get("settings") or {})
        except DwnasError as exc:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        config = self.server.config
        request["settings"] = settings.replace(
            device=config.device, sysfs_root=config.sysfs_root
        ).to_dict()
        return length, request

    def handle_expect_100(self) -> bool:
        """Refuse a bad request before the client sends its body; else say 100 Continue."""
        try:
            self._check_headers()
        except RequestRejected as exc:
            self._reply(exc.status, {"error": str(exc)})
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        if self.path != "/health":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})
        elif not self._authorised():
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong token"})
        else:
            from dwnas import __version__

            config = self.server.config
            self._reply(
                HTTPStatus.OK,
                {
                    "ok": True,
                    "version": __version__,
                    "device": config.device,
                    "max_bytes": config.max_bytes,
                    "job_timeout_s": config.job_timeout_s,
                },
                close=False,
            )

    def do_POST(self) -> None:
        try:
            length, request = self._check_headers()
        except RequestRejected as exc:
            self._reply(exc.status, {"error": str(exc)})
            return
        self._reader.deadline += length / UPLOAD_BYTES_PER_S
        try:
            body = self.rfile.read(length)
        except OSError:  # the client stalled past its deadline or reset the connection
            body = b""
        if len(body) != length:
            if self._reader.expired:
                self._reply(HTTPStatus.REQUEST_TIMEOUT, {"error": "request body not received in time"})
            self.close_connection = True  # the client went away mid-body
            return
        sniffed = sniff_format(body[:16])
        if sniffed != request["format"]:
            found = sniffed or "neither a zip (TorchScript) nor an ONNX protobuf"
            self._reply(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                {"error": f"declared format {request['format']!r} but the bytes are {found}"},
            )
            return
        if not self.server.job_lock.acquire(blocking=False):
            self._reply(
                HTTPStatus.SERVICE_UNAVAILABLE, {"error": "agent busy with another measurement"}
            )
            return
        try:
            status, payload = run_job(body, request, self.server.config.job_timeout_s)
        finally:
            self.server.job_lock.release()
        self._reply(status, payload)


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return lines[-1] if lines else "no output"


def run_job(model: bytes, request: dict, timeout_s: float) -> tuple[HTTPStatus, dict]:
    """Measure in a child process (own session, killed with its children on timeout)."""
    with tempfile.TemporaryDirectory(prefix="dwnas-agent-") as tmp:
        model_path = Path(tmp) / f"model{SUFFIX[request['format']]}"
        model_path.write_bytes(model)
        settings_path = Path(tmp) / "settings.json"
        settings_path.write_text(json.dumps(request["settings"]))
        out_path = Path(tmp) / "measure.json"
        command = [
            sys.executable,
            "-m",
            "dwnas.measure.job",
            str(model_path),
            str(request["resolution"]),
            str(settings_path),
            str(out_path),
        ]
        env = {**os.environ, "DWNAS_TRACKING": "0"}
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return HTTPStatus.GATEWAY_TIMEOUT, {
                "error": f"measurement timed out after {timeout_s:g} s on the agent"
            }
        message = _error_line(stderr).replace(str(model_path), UPLOADED_MODEL)
        if proc.returncode == 2:
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": message}
        if proc.returncode != 0 or not out_path.is_file():
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": f"measurement job failed (exit {proc.returncode}): {message}"
            }
        return HTTPStatus.OK, json.loads(out_path.read_text())


def make_server(host: str, port: int, config: AgentConfig) -> AgentServer:
    """A bound, not yet serving agent; port 0 picks a free port (see ``server_address``).

    ``device="jetson"`` is refused where the sysfs root shows no Jetson.
    """
    if config.device == "jetson":
        from dwnas.measure.jetson import require_jetson

        require_jetson(config.sysfs_root)
    try:
        return AgentServer((host, port), config)
    except OSError as exc:
        raise DwnasError(f"agent: cannot listen on {host}:{port} ({exc})") from exc
