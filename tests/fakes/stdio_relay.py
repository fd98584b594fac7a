"""A stdio backend process for tests: its stdin and stdout lines travel to and from an in-process FakeBackend.

    python tests/fakes/stdio_relay.py PORT

The gateway starts this as it would any stdio server; the FakeBackend listening on PORT (on
127.0.0.1) answers. A line `{"relay": "exit", "code": N}` from the fake makes it exit with
code N, as a crashing server would; `{"relay": "stderr", "text": T}` writes T to stderr. Stdin
closing makes it exit 0, as a well-behaved server does. Standard library only: it runs
without the project on its path.
"""

import json
import os
import socket
import sys
import threading


def main() -> None:
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    threading.Thread(target=_forward_stdin, args=(sock,), daemon=True).start()
    for line in sock.makefile("rb"):
        if line.startswith(b'{"relay"'):
            command = json.loads(line)
            if command["relay"] == "stderr":
                sys.stderr.write(command["text"] + "\n")
                sys.stderr.flush()
                continue
            os._exit(command["code"])
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    os._exit(0)


def _forward_stdin(sock: socket.socket) -> None:
    for line in sys.stdin.buffer:
        sock.sendall(line)
    os._exit(0)


if __name__ == "__main__":
    main()
