"""``python -m asmopt.server``: the language server on stdio (``--tcp HOST:PORT`` to debug)."""

from __future__ import annotations

import sys

from asmopt.server.server import main

if __name__ == "__main__":
    tcp = None
    if len(sys.argv) == 3 and sys.argv[1] == "--tcp":
        host, _, port = sys.argv[2].rpartition(":")
        tcp = (host or "127.0.0.1", int(port))
    main(tcp)
