"""Process lifecycle (clean shutdown, no leaked children), /healthz, /readyz, /metrics, call logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.protocol.vocabulary import encode_header_value
from tests.gateway_process import BIN, ROOT, run_gateway

TIME = {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]}
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def call(url: str, name: str, arguments: dict) -> httpx.Response:
    return httpx.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": META},
        },
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": encode_header_value(name),
        },
        timeout=10,
    )


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"


def listening_socket_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def test_stdio_backends_do_not_inherit_the_listening_socket() -> None:
    with run_gateway({"mcpServers": [TIME]}) as gateway:
        listening = listening_socket_inodes(gateway.port)
        assert listening & socket_inodes(gateway.process.pid), "the gateway itself holds its port"
        children = children_of(gateway.process.pid)
        assert children, "the stdio backend runs as a child of the gateway"
        for child in children:
            assert not listening & socket_inodes(child), f"backend process {child} holds the gateway's port"


def test_ctrl_c_stops_like_sigterm_without_a_traceback() -> None:
    with run_gateway({"mcpServers": [TIME]}) as gateway:
        assert gateway.stop(signal.SIGINT) == 0
        log = gateway.log()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def test_an_unreachable_redis_at_start_is_one_clear_line() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [
            BIN / "aggregator",
            "serve",
            "-c",
            ROOT / "tests/data/empty.yaml",
            "--redis-url",
            f"redis://127.0.0.1:{port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line
    assert f"cannot reach Redis at 127.0.0.1:{port}" in done.stderr and "--redis-url" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_sigterm_exits_zero_and_reaps_stdio_backends() -> None:
    with run_gateway({"mcpServers": [TIME]}) as gateway:
        children = children_of(gateway.process.pid)
        assert children, "the stdio backend should be a child of the gateway"
        assert gateway.stop(signal.SIGTERM) == 0
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "backend processes outlived the gateway"


def test_health_readiness_and_metrics() -> None:
    with run_gateway({"mcpServers": [TIME]}) as gateway:
        assert httpx.get(f"{gateway.base}/healthz").json() == {"status": "alive"}
        ready = gateway.ready()
        assert ready["status"] == "ok" and ready["store"] == {"kind": "memory", "ok": True}
        assert ready["backends"]["time"]["state"] == "up"
        assert ready["backends"]["time"]["protocol"] == "2026-07-28"
        assert "result" in call(gateway.url, "x_time_get_current_time", {"timezone": "UTC"}).json()
        assert "result" in call(gateway.url, "x_time_get_current_time", {"timezone": "Nowhere/Atlantis"}).json()
        metrics = httpx.get(f"{gateway.base}/metrics").text
        assert 'mcp_tool_calls_total{outcome="ok",server="time",tool="x_time_get_current_time"} 1.0' in metrics
        assert 'mcp_tool_calls_total{outcome="tool_error",server="time",tool="x_time_get_current_time"} 1.0' in metrics
        assert "mcp_tool_call_duration_seconds_bucket" in metrics
        assert 'mcp_backend_up{server="time"} 1.0' in metrics


def test_calls_to_unknown_tools_share_one_metric_label() -> None:
    with run_gateway({"mcpServers": [TIME]}) as gateway:
        for suffix in "abcdefghij":
            assert "error" in call(gateway.url, f"zz_{suffix}", {}).json()
        assert "error" in call(gateway.url, "x_time_kubectl_delete\u200b", {}).json()
        metrics = httpx.get(f"{gateway.base}/metrics").text
    assert 'mcp_tool_calls_total{outcome="error",server="-",tool="unknown"} 11.0' in metrics
    assert "zz_" not in metrics and "kubectl" not in metrics


def test_json_logs_have_one_line_per_tool_call_without_arguments() -> None:
    with run_gateway({"mcpServers": [TIME]}, args=("--log-format", "json")) as gateway:
        call(gateway.url, "x_time_get_current_time", {"timezone": "Europe/Paris"})
        time.sleep(0.2)
        lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line["msg"] == "tool call"]
    assert len(calls) == 1
    assert {"tool", "server", "outcome", "duration_s"} <= calls[0].keys()
    assert calls[0]["server"] == "time" and calls[0]["outcome"] == "ok"
    own = [line for line in lines if line.get("stream") != "stderr"]  # not the backend's own stderr
    assert "Europe/Paris" not in json.dumps(own)


def test_check_command_lists_backends_and_rejects_bad_config(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("mcpServers: [{name: time, type: stdio, command: python, args: [-m, mcp_server_time]}]")
    result = subprocess.run([BIN / "aggregator", "check", "-c", good], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "time" in result.stdout and "x_time" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("mcpServers: [{name: time, type: stdio, timeout: soon}]")
    result = subprocess.run([BIN / "aggregator", "check", "-c", bad], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{bad}: $.mcpServers[0].timeout" in result.stderr
    missing = subprocess.run(
        [BIN / "aggregator", "serve", "-c", tmp_path / "none.yaml"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_serve_reports_a_port_in_use() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = ROOT / "tests" / "data" / "empty.yaml"
        result = subprocess.run(
            [BIN / "aggregator", "serve", "-c", config, "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1
    assert "pick another with --port" in result.stderr


def test_sigterm_lets_the_call_in_flight_finish() -> None:
    import threading

    toolbox = {"name": "tb", "type": "stdio", "command": sys.executable, "args": ["-m", "tests.servers.toolbox"]}
    with run_gateway({"mcpServers": [toolbox]}) as gateway:
        outcome: dict[str, object] = {}

        def slow_call() -> None:
            try:
                outcome["reply"] = call(gateway.url, "x_tb_slow", {"seconds": 1.5}).json()
            except Exception as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)
        started = time.monotonic()
        assert gateway.stop(signal.SIGTERM) == 0
        caller.join(10)
    assert "error" not in outcome, outcome
    assert outcome["reply"]["result"]["content"][0]["text"] == "slept 1.5"  # type: ignore[index]
    assert time.monotonic() - started < 10


def test_sigterm_ends_open_streams_at_once_with_their_final_result() -> None:
    import threading

    with run_gateway({"mcpServers": []}) as gateway:
        listen = {"jsonrpc": "2.0", "id": "watch", "method": "subscriptions/listen"}
        listen["params"] = {"notifications": {"toolsListChanged": True}, "_meta": META}
        headers = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "subscriptions/listen",
        }
        received: list[bytes] = []
        opened = threading.Event()

        def follow() -> None:
            with httpx.stream("POST", gateway.url, json=listen, headers=headers, timeout=30) as response:
                for chunk in response.iter_bytes():
                    received.append(chunk)
                    opened.set()

        follower = threading.Thread(target=follow)
        follower.start()
        assert opened.wait(10)
        started = time.monotonic()
        assert gateway.stop(signal.SIGTERM) == 0
        follower.join(10)
        stopped = time.monotonic() - started
    stream = b"".join(received)
    assert b'"resultType":"complete"' in stream and b'"id":"watch"' in stream  # the listen's final result
    assert stopped < 5, f"SIGTERM took {stopped:.1f}s with a stream open (shutdownGrace is 10s)"
