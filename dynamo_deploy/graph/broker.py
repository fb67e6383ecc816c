"""The loopback ZMQ broker of Dynamo's event plane, run by the Dynamo venv's python (pyzmq).

    python broker.py XSUB_PORT XPUB_PORT

Without it each worker binds its event sockets on random ports of every interface; named in
`DYN_ZMQ_BROKER_URL`, this XSUB/XPUB proxy keeps every event-plane port on 127.0.0.1
(docs/upstream-2026.md §5). SIGTERM and SIGINT stop it.
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        zmq.proxy(xsub, xpub)
    except (KeyboardInterrupt, SystemExit, zmq.ContextTerminated):
        pass
    finally:
        xsub.close(0)
        xpub.close(0)
        context.term()


if __name__ == "__main__":
    main()
