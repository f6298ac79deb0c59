"""Client of the remote device agent: send a model, get its measure.json back.

Every network step runs against one deadline, so a dead, hung or unreachable agent becomes a
:class:`DwnasError` after ``timeout`` seconds rather than a pipeline that never ends. The client
sends ``Expect: 100-continue`` and waits for the agent's go-ahead before the body, so a refusal
(wrong token, too large) arrives without uploading the model first.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dwnas.errors import DwnasError
from dwnas.measure.agent import REQUEST_HEADER, UPLOADED_MODEL, sniff_format
from dwnas.measure.models import file_info, model_format
from dwnas.measure.settings import MeasureSettings

MAX_INTERIM_BYTES = 65536


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); DwnasError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DwnasError(f"--remote: expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _interim_status(sock: socket.socket, deadline: _Deadline) -> int:
    """Status of the agent's first answer; a ``100 Continue`` is consumed, anything else is left
    unread (peeked only) for http.client to parse as the final response."""
    while True:
        sock.settimeout(deadline.left())
        data = sock.recv(MAX_INTERIM_BYTES, socket.MSG_PEEK)
        if not data:
            raise ConnectionError("agent closed the connection without answering")
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status = int(data.split(None, 2)[1])
            if status == 100:
                remaining = end + 4
                while remaining:
                    remaining -= len(sock.recv(remaining))
            return status
        if len(data) >= MAX_INTERIM_BYTES:
            raise ConnectionError("agent sent an oversized response header")
        time.sleep(0.01)  # a partial header: wait for the rest


def measure_remote(
    host: str,
    port: int,
    token: str,
    model_path: str | Path,
    settings: MeasureSettings | Mapping[str, Any] | None,
    timeout: float,
    *,
    resolution: int,
) -> dict:
    """Measure ``model_path`` on the agent at host:port; the agent's measure.json, annotated.

    ``settings.device`` and ``settings.sysfs_root`` are decided by the agent (its own flags).
    The returned model block names the local path and is checked against the agent's sha256.
    """
    from dwnas.measure.api import as_settings

    settings = as_settings(settings)
    path = Path(model_path)
    fmt = model_format(path)
    if not path.is_file():
        raise DwnasError(f"{path}: model file not found")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise DwnasError(f"measure: resolution must be a positive integer, got {resolution!r}")
    body = path.read_bytes()
    if sniff_format(body[:16]) != fmt:
        raise DwnasError(f"{path}: the bytes are not a {fmt} file (checked by magic bytes)")
    request = {"format": fmt, "resolution": resolution, "settings": settings.to_dict()}
    where = f"agent {host}:{port}"
    deadline = _Deadline(timeout)
    try:
        sock = socket.create_connection((host, port), timeout=deadline.left())
    except TimeoutError as exc:
        raise DwnasError(f"{where}: no connection within {timeout:g} s") from exc
    except OSError as exc:
        raise DwnasError(f"{where}: cannot connect ({exc})") from exc
    try:
        head = (
            f"POST /measure HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n"
            f"{REQUEST_HEADER}: {json.dumps(request)}\r\n\r\n"
        )
        sock.settimeout(deadline.left())
        sock.sendall(head.encode("latin-1"))
        if _interim_status(sock, deadline) == 100:
            sock.settimeout(deadline.left())
            sock.sendall(body)
        sock.settimeout(deadline.left())
        response = http.client.HTTPResponse(sock)
        response.begin()
        sock.settimeout(deadline.left())
        payload = response.read()
    except TimeoutError as exc:
        raise DwnasError(f"{where}: no answer within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException, ValueError, IndexError) as exc:
        raise DwnasError(f"{where}: connection failed ({type(exc).__name__}: {exc})") from exc
    finally:
        sock.close()
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise DwnasError(f"{where}: answered {response.status} with non-JSON content") from exc
    if response.status != 200:
        message = str(data.get("error") if isinstance(data, dict) else data)
        message = message.replace(UPLOADED_MODEL, str(path))
        raise DwnasError(f"{where}: {response.status} {response.reason}: {message}")
    local = file_info(path)
    if data.get("model", {}).get("sha256") != local["sha256"]:
        raise DwnasError(f"{where}: measured a model whose sha256 differs from {path}")
    data["model"].update(local)
    data["remote"] = {"agent": f"{host}:{port}"}
    return data
