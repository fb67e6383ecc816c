"""The loopback ZMQ broker of Dynamo's event plane, run by the Dynamo venv's python (pyzmq).

    python broker.py XSUB_PORT XPUB_PORT

Without it each worker binds its event sockets on random ports of every interface; named in
`DYN_ZMQ_BROKER_URL`, this XSUB/XPUB proxy keeps every event-plane port on 127.0.0.1
(docs/upstream-2026.md §5.6). SIGINT and SIGTERM end it at once: zmq.proxy blocks in C, where a Python
signal handler would never run, and there is nothing to clean up (the OS closes the sockets).
"""

from __future__ import annotations

import signal
import sys

import zmq


def main() -> None:
    xsub_port, xpub_port = (int(port) for port in sys.argv[1:3])
    context = zmq.Context()
    xsub, xpub = context.socket(zmq.XSUB), context.socket(zmq.XPUB)
    xsub.bind(f"tcp://127.0.0.1:{xsub_port}")
    xpub.bind(f"tcp://127.0.0.1:{xpub_port}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    zmq.proxy(xsub, xpub)


if __name__ == "__main__":
    main()
