"""A stand-in for llama-server: the command line Parley gives it, ``/health``, and
``POST /v1/chat/completions`` streamed as SSE, slowly (a word every ``--word-delay`` seconds, set
through ``PARLEY_STAND_IN_WORD_DELAY`` in the command line's absence), with the per-launch key
checked. Started by ``LlamaServer`` as if it were the real binary (``PARLEY_LLAMA_SERVER``)."""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "This answer comes from the stand-in server, one slow word at a time, until it is done."


def main(argv: list[str]) -> None:
    port = int(argv[argv.index("--port") + 1])
    with open(argv[argv.index("--api-key-file") + 1], encoding="utf-8") as f:
        key = f.read().strip()
    delay = 0.05

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b'{"status": "ok"}'
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self.headers.get("Authorization") != f"Bearer {key}":
                body = b'{"error": {"message": "Invalid API Key", "type": "authentication_error"}}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def send(event: object) -> None:
                data = f"data: {json.dumps(event)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
                return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            for word in REPLY.split(" "):
                send(chunk({"content": word + " "}))
                time.sleep(delay)
            send(chunk({}, "stop"))
            data = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
            self.wfile.flush()

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
