"""The README's auth example runs as written (examples/auth_demo.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.gateway_process import ROOT


def test_the_auth_demo_signs_alice_in_to_the_gateway_and_both_backends() -> None:
    result = subprocess.run(
        [sys.executable, "examples/auth_demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "x_kube_whoami (her own token, forwarded): sub=alice" in output
    assert "HTTP 200, 'Signed in to saas'" in output
    assert "x_saas_whoami (the token she got by signing in): sub=alice" in output
    assert "auth://status: kube=connected, saas=connected" in output
    assert "eyJ" not in output
