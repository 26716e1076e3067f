"""The internet host's web server: a known body, and a log line per request with the client address.

``GET /`` returns the known body; ``GET /whoami`` returns the client's source address. Run inside the
internet namespace: ``python -m lab.httpd --bind ADDR --port 80 --log FILE``.
"""

from __future__ import annotations

import argparse
import http.server
import sys
import time
from pathlib import Path

from lab.common import INTERNET_BODY


def serve(bind: str, port: int, log: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "cloudrepo-lab-internet"

        def do_GET(self) -> None:
            client = self.client_address[0]
            body = (client + "\n") if self.path == "/whoami" else INTERNET_BODY
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with log.open("a") as fh:
                fh.write(f"{time.time():.3f} {client} GET {self.path}\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((bind, port), Handler)
    httpd.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.httpd")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.bind, args.port, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
