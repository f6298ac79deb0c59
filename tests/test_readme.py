"""README's commands as written: the Jetson recipe's board side (token file, agent on loopback),
run line by line in a fresh HOME. The SSH lines need a board and are not run."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def jetson_blocks() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Running on a Jetson"):text.index("## Development")]
    return [[line for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_jetson_recipe_makes_a_private_token_and_a_loopback_agent(tmp_path):
    board, workstation = jetson_blocks()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    token_lines = [line for line in board if "nvpmodel" not in line and "pip install" not in line
                   and "agent serve" not in line]
    assert any("mkdir" in line for line in token_lines) and any("agent.token" in line
                                                                  for line in token_lines)
    for line in token_lines:
        subprocess.run(["bash", "-ec", line], env=env, check=True, umask=0o022)
    token = home / ".dwnas/agent.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert len(token.read_text().strip()) >= 32

    (serve,) = [line for line in board if "agent serve" in line]
    assert "--host" not in serve  # the default: 127.0.0.1
    port = free_port()
    serve = serve.split("#")[0].replace("8765", str(port)).replace("--device jetson", "--device host")
    agent = subprocess.Popen(["bash", "-c", f"exec {serve}"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={
            "Authorization": f"Bearer {token.read_text().strip()}"})
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    assert json.load(resp)["ok"] is True
                break
            except OSError:
                assert agent.poll() is None, agent.communicate()
                assert time.monotonic() < deadline, "agent did not answer"
                time.sleep(0.3)
        listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert [line.split()[1] for line in listening] == [f"0100007F:{port:04X}"]  # 127.0.0.1
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=30)
    assert "readable" not in err  # no warning about the token file's mode

    assert workstation[0].startswith("mkdir -p -m 700 ~/.dwnas")
    assert any("ssh -N -L 8765:127.0.0.1:8765" in line for line in workstation)
    assert any("umask 077" in line and "agent.token" in line for line in workstation)
