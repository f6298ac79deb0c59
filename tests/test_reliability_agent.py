"""The measurement agent under abuse (issue 13): connection cap, request deadline, listen
backlog, duplicate Content-Length, ``--device jetson`` off a Jetson. Loopback only.

Deadlines are tested on a clock the test moves, not by waiting for them: the outcome then does not
depend on how fast the machine runs the agent's threads."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dwnas.cli import main
from dwnas.errors import DwnasError
from dwnas.measure import agent
from dwnas.measure.agent import AgentConfig, AgentServer, make_server

TOKEN = "test-token-0123456789"
HEALTH = f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
FIXTURES = Path(__file__).parent / "fixtures" / "jetson"


@contextlib.contextmanager
def serving(serve: bool = True, **config) -> Iterator[AgentServer]:
    """An agent on an ephemeral loopback port (served from a thread unless ``serve`` is False)."""
    server = make_server("127.0.0.1", 0, AgentConfig(token=TOKEN, **config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    if serve:
        thread.start()
    try:
        yield server
    finally:
        if serve:
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()


def port(server: AgentServer) -> int:
    return server.server_address[1]


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data``, read until the agent closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Clock:
    """Stands in for the agent's ``time`` module: ``monotonic`` only moves when the test says."""

    def __init__(self):
        self.now = 1000.0
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(agent, "time", fake)
    return fake


def read_answer(sock: socket.socket) -> bytes:
    """What the agent sends until it closes the connection (a reset also ends it)."""
    answer = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def trickle_past_the_deadline(sock: socket.socket, clock: Clock, byte: bytes) -> bytes:
    """Send ``byte`` five times 100 s apart on the agent's clock (no answer: inside its 1000 s
    deadline), then once more 1,000 s later; return the agent's answer."""
    assert wait_for(lambda: clock.reads > 0), "the agent never started the request's deadline"
    for _ in range(5):
        clock.now += 100.0
        sock.sendall(byte)
        with pytest.raises(TimeoutError):  # still open, nothing said
            sock.recv(4096)
    clock.now += 1000.0
    sock.sendall(byte)
    sock.settimeout(30)
    return read_answer(sock)


def test_connections_beyond_the_cap_wait_instead_of_taking_threads():
    base = handler_threads()
    with serving(max_connections=3) as server:
        idle = [socket.create_connection(("127.0.0.1", port(server)), timeout=5) for _ in range(20)]
        try:
            assert wait_for(lambda: handler_threads() - base == 3)
            time.sleep(0.3)  # time for any further (wrongly spawned) threads to show
            assert handler_threads() - base == 3, "a thread per connection, no cap"
            with socket.create_connection(("127.0.0.1", port(server)), timeout=0.5) as probe:
                probe.sendall(HEALTH.encode())
                with pytest.raises(TimeoutError):  # queued behind the 20 idle connections
                    probe.recv(1)
        finally:
            for sock in idle:
                sock.close()
        # once the idle connections go, queued requests are served again
        assert exchange(port(server), HEALTH.encode()).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: handler_threads() == base)


def test_trickling_client_is_dropped_at_the_header_deadline(clock):
    """One byte at a time, each well inside the per-recv timeout: still cut off at the deadline
    (without it the agent would wait for the next byte, and the test's read would time out)."""
    with serving(read_timeout_s=1000.0) as server:
        with socket.create_connection(("127.0.0.1", port(server)), timeout=0.2) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            answer = trickle_past_the_deadline(sock, clock, b"X")
        assert answer.startswith(b"HTTP/1.1 408"), answer


def test_trickled_body_is_cut_off_at_its_deadline(clock):
    with serving(read_timeout_s=1000.0) as server:
        head = ("POST /measure HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n"
                f"Authorization: Bearer {TOKEN}\r\n"
                'X-Dwnas-Request: {"format": "onnx", "resolution": 16}\r\n\r\n')
        with socket.create_connection(("127.0.0.1", port(server)), timeout=0.2) as sock:
            sock.sendall(head.encode() + b"\x08")
            answer = trickle_past_the_deadline(sock, clock, b"\x07")
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request body not received in time" in answer


def test_a_burst_of_connections_queues_in_the_backlog():
    """100 connections while the agent is not accepting: all complete the handshake (with a
    backlog of 5 the rest's SYNs are dropped, retried and dropped again for as long as nothing is
    accepted, so they never connect), then all get their health answer."""
    assert AgentServer.request_queue_size >= 128
    with serving(serve=False) as server:
        selector = selectors.DefaultSelector()
        socks = []
        try:
            for _ in range(100):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port(server)))
                socks.append(sock)
                selector.register(sock, selectors.EVENT_WRITE)
            established, deadline = set(), time.monotonic() + 60  # only against a hang
            while len(established) < len(socks) and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.1):
                    if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        established.add(key.fileobj)
                    selector.unregister(key.fileobj)
            assert len(established) == len(socks), f"only {len(established)} of 100 connected"
            for sock in socks:
                sock.setblocking(True)
                sock.settimeout(20)
                sock.sendall(HEALTH.encode())
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                answers = []
                for sock in socks:
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                    answers.append(data)
            finally:
                server.shutdown()
                thread.join(timeout=10)
            assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
        finally:
            selector.close()
            for sock in socks:
                sock.close()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (["Content-Length: 5", "Content-Length: 6"], b"more than one Content-Length header"),
        (["Content-Length: 5", "Content-Length: 5"], b"more than one Content-Length header"),
        (["Content-Length: 5", "Transfer-Encoding: chunked"], b"Transfer-Encoding is not supported"),
        (["Content-Length: +5"], b"Content-Length is not an integer"),
    ],
)
def test_ambiguous_body_length_is_refused(headers, message):
    with serving() as server:
        head = "\r\n".join(["POST /measure HTTP/1.1", "Host: x", *headers,
                            f"Authorization: Bearer {TOKEN}",
                            'X-Dwnas-Request: {"format": "onnx", "resolution": 16}',
                            "Expect: 100-continue"]) + "\r\n\r\n"
        answer = exchange(port(server), head.encode(), timeout=5)
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert message in answer


def test_jetson_agent_refused_off_a_jetson(tmp_path, capsys):
    with pytest.raises(DwnasError, match="does not look like a Jetson.*nv_tegra_release.*INA3221"):
        make_server("127.0.0.1", 0, AgentConfig(token=TOKEN, device="jetson",
                                                sysfs_root=str(tmp_path)))
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    assert main(["agent", "serve", "--port", "0", "--token-file", str(token), "--device",
                 "jetson", "--sysfs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device jetson: ") and "does not look like a Jetson" in err
    with serving(device="jetson", sysfs_root=str(FIXTURES / "orin-nano-jp5")) as server:
        assert b'"device": "jetson"' in exchange(port(server), HEALTH.encode())
