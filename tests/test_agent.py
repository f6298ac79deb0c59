"""The remote agent and its client on loopback: real sockets, real subprocess jobs, no mocks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dwnas.cli import main
from dwnas.errors import DwnasError
from dwnas.measure.agent import AgentConfig, AgentServer, make_server, read_token
from dwnas.measure.remote import measure_remote, parse_address

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

TOKEN = "test-token-0123456789"
FAST = {"iters": 2, "warmup": 1, "threads": 1, "trt": False}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("agent-models")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.jit.trace(net, torch.randn(1, 3, 16, 16)).save(str(folder / "net.pt"))
    with zipfile.ZipFile(folder / "not_torchscript.pt", "w") as archive:
        archive.writestr("hello.txt", "a zip file, but no TorchScript inside")
    (folder / "garbage.pt").write_bytes(os.urandom(256).replace(b"PK", b"pk"))
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    """An agent on an ephemeral loopback port, served from a thread, stopped after the test."""
    server = make_server(
        "127.0.0.1",
        0,
        AgentConfig(token=TOKEN, max_bytes=1_000_000, job_timeout_s=120, device="host"),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _port(server: AgentServer) -> int:
    return server.server_address[1]


def _raw_exchange(port: int, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send request headers (and ``body``) and return the whole answer, read until the agent
    closes the connection (headers and body may arrive in separate segments)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _head(length: int, token: str | None, fmt: str = "torchscript", expect: bool = True) -> str:
    lines = [
        "POST /measure HTTP/1.1",
        "Host: x",
        f"Content-Length: {length}",
        f'X-Dwnas-Request: {{"format": "{fmt}", "resolution": 16}}',
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if expect:
        lines.append("Expect: 100-continue")
    return "\r\n".join(lines) + "\r\n\r\n"


def test_remote_measurement_returns_measure_json(agent, models):
    result = measure_remote(
        "127.0.0.1", _port(agent), TOKEN, models["net.pt"], FAST, 120, resolution=16
    )
    assert result["backend"] == "host"
    assert result["latency_ms"]["iterations"] == 2
    assert result["input_shape"] == [1, 3, 16, 16]
    assert result["model"]["path"] == str(models["net.pt"])
    assert result["remote"] == {"agent": f"127.0.0.1:{_port(agent)}"}
    assert (result["energy_per_image_mj"] is None) == (result["energy_reason"] is not None)


def test_wrong_or_missing_token_is_refused_before_the_body(agent, models):
    with pytest.raises(DwnasError, match="401 Unauthorized: missing or wrong token"):
        measure_remote(
            "127.0.0.1", _port(agent), "wrong", models["net.pt"], FAST, 30, resolution=16
        )
    answer = _raw_exchange(_port(agent), _head(50_000, token=None))
    assert answer.startswith(b"HTTP/1.1 401")  # answered although no body byte was sent
    assert b"WWW-Authenticate: Bearer" in answer


def test_oversize_payload_gets_413_without_upload(agent, models):
    answer = _raw_exchange(_port(agent), _head(10_000_000_000, token=TOKEN, expect=False))
    assert answer.startswith(b"HTTP/1.1 413")
    agent.config.max_bytes = 100
    with pytest.raises(DwnasError, match="413 .*accepts at most 100"):
        measure_remote("127.0.0.1", _port(agent), TOKEN, models["net.pt"], FAST, 30, resolution=16)


def test_unknown_format_and_wrong_magic_are_refused(agent, models):
    answer = _raw_exchange(_port(agent), _head(10, token=TOKEN, fmt="keras"))
    assert answer.startswith(b"HTTP/1.1 415")
    body = models["garbage.pt"].read_bytes()
    answer = _raw_exchange(_port(agent), _head(len(body), token=TOKEN, expect=False), body)
    assert answer.startswith(b"HTTP/1.1 415")
    assert b"neither a zip" in answer
    with pytest.raises(DwnasError, match="not a torchscript file"):  # the client checks first
        measure_remote(
            "127.0.0.1", _port(agent), TOKEN, models["garbage.pt"], FAST, 30, resolution=16
        )


def test_model_that_fails_to_load_is_an_error_response(agent, models):
    path = models["not_torchscript.pt"]
    with pytest.raises(DwnasError, match="422 .*cannot load as TorchScript") as caught:
        measure_remote("127.0.0.1", _port(agent), TOKEN, path, FAST, 120, resolution=16)
    assert str(path) in str(caught.value)  # the agent's temporary path is replaced by ours


def test_job_past_the_agent_timeout_is_killed(agent, models):
    agent.config.job_timeout_s = 0.3  # far less than a Python process needs to import torch
    with pytest.raises(DwnasError, match="504 .*timed out after 0.3 s"):
        measure_remote("127.0.0.1", _port(agent), TOKEN, models["net.pt"], FAST, 60, resolution=16)


def test_busy_agent_answers_503(agent, models):
    with agent.job_lock, pytest.raises(DwnasError, match="503 .*busy"):
        measure_remote("127.0.0.1", _port(agent), TOKEN, models["net.pt"], FAST, 30, resolution=16)


def test_client_times_out_on_an_agent_that_never_answers(models):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        with pytest.raises(DwnasError, match="no answer within 0.5 s"):
            measure_remote("127.0.0.1", port, TOKEN, models["net.pt"], FAST, 0.5, resolution=16)


def test_client_reports_an_unreachable_agent(models):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DwnasError, match="cannot connect"):
        measure_remote("127.0.0.1", port, TOKEN, models["net.pt"], FAST, 5, resolution=16)


def test_cli_remote_flag(agent, models, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    out = tmp_path / "measure.json"
    argv = [
        "measure",
        "--model",
        str(models["net.pt"]),
        "--resolution",
        "16",
        "--out",
        str(out),
        "--iters",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--remote",
        f"127.0.0.1:{_port(agent)}",
        "--token-file",
        str(token_file),
    ]
    assert main(argv) == 0
    assert json.loads(out.read_text())["remote"]["agent"] == f"127.0.0.1:{_port(agent)}"


def test_agent_serve_command_binds_loopback(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dwnas",
            "agent",
            "serve",
            "--port",
            "0",
            "--token-file",
            str(token_file),
            "--device",
            "host",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = proc.stderr.readline()
        assert banner.startswith("dwnas agent on http://127.0.0.1:"), banner
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        health = _raw_exchange(
            port,
            f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{TOKEN}\r\nConnection: close\r\n\r\n",
        )
        assert health.startswith(b"HTTP/1.1 200")
        assert b'"ok": true' in health
        assert _raw_exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 401"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def test_token_file_and_address_checks(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(DwnasError, match="token file is empty"):
        read_token(empty)
    with pytest.raises(DwnasError, match="token file not found"):
        read_token(tmp_path / "absent")
    assert parse_address("jetson.local:8765") == ("jetson.local", 8765)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(DwnasError, match="HOST:PORT"):
        parse_address("jetson.local")
