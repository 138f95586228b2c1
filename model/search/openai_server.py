"""A small OpenAI-compatible HTTP server around any ``ChatBackend``.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``temperature``,
``max_tokens``, ``seed``; no streaming) with the standard library's ``ThreadingHTTPServer``.
It lets a model loaded once on a GPU machine answer many asmopt processes, and backs
``asmopt serve-model``. It binds 127.0.0.1 unless told otherwise: it has no authentication.

Run it with ``asmopt serve-model --model PATH``
(or ``python -m asmopt.model.search.openai_server``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asmopt.model.search.backends import BACKEND_NAMES, ChatBackend, check_messages, check_sampling
from asmopt.model.search.policy import PolicyError

__all__ = ["RunningServer", "build_server", "main", "run_in_thread", "serve"]

_MAX_BODY_BYTES = 32 * 1024 * 1024
_MAX_N = 128
_DEFAULT_MAX_TOKENS = 2000


class _RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style JSON error."""

    def __init__(self, status: HTTPStatus, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class _ModelServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive
    backend: ChatBackend
    model_name: str


class _Handler(BaseHTTPRequestHandler):
    server: _ModelServer
    server_version = "asmopt-openai/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: a language server's stderr is its log, and tests want silence."""

    def _get(self) -> dict[str, Any]:
        if self._route() == "/v1/models":
            return {
                "object": "list",
                "data": [
                    {
                        "id": self.server.model_name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "asmopt",
                    }
                ],
            }
        raise _RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {self.path}")

    def _post(self) -> dict[str, Any]:
        if self._route() != "/v1/chat/completions":
            raise _RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {self.path}")
        body = self._read_json()
        messages = _messages(body.get("messages"))
        if body.get("stream"):
            raise _RequestError(HTTPStatus.BAD_REQUEST, "streaming is not supported: drop stream")
        n = body.get("n")
        n = 1 if n is None else n
        temperature = body.get("temperature", 1.0)
        temperature = 1.0 if temperature is None else temperature
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        max_tokens = _DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        seed = body.get("seed")
        try:
            check_sampling(n, temperature, max_tokens)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError(f"seed must be an integer, got {seed!r}")
        except ValueError as exc:
            raise _RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        if n > _MAX_N:
            raise _RequestError(HTTPStatus.BAD_REQUEST, f"n must be at most {_MAX_N}, got {n}")
        try:
            texts = self.server.backend.complete(
                messages, n=n, temperature=float(temperature), max_new_tokens=max_tokens, seed=seed
            )
        except ValueError as exc:
            raise _RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        except PolicyError as exc:
            raise _RequestError(
                HTTPStatus.SERVICE_UNAVAILABLE, str(exc), "backend_unavailable"
            ) from exc
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    # The back-end does not say whether the token limit was hit.
                    "finish_reason": "stop",
                }
                for i, text in enumerate(texts)
            ],
        }

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        # Clients configured without the /v1 suffix still find the endpoints.
        return path if path.startswith("/v1/") else "/v1" + path

    def _read_json(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length header") from exc
        if length > _MAX_BODY_BYTES:
            raise _RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the {_MAX_BODY_BYTES} byte limit",
            )
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _RequestError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    def _dispatch(self, handler: Any) -> None:
        try:
            status, payload = HTTPStatus.OK, handler()
        except _RequestError as exc:
            status = exc.status
            payload = {"error": {"message": exc.message, "type": exc.kind, "code": None}}
        except Exception as exc:  # a bug must answer 500, not hang the client
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            message = f"internal error: {type(exc).__name__}: {exc}"
            payload = {"error": {"message": message, "type": "server_error", "code": None}}
        data = json.dumps(payload).encode()
        if status != HTTPStatus.OK:
            # The body of a refused request may be unread; never reuse the connection.
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to tell it


def _messages(value: Any) -> list[dict[str, str]]:
    """OpenAI messages, with list-of-parts content flattened to its text parts."""
    if not isinstance(value, list):
        raise _RequestError(HTTPStatus.BAD_REQUEST, "messages must be a list")
    # Checked by check_messages below: a role or content that is not a string is refused.
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise _RequestError(HTTPStatus.BAD_REQUEST, f"messages[{i}] must be an object")
        content = message.get("content")
        if isinstance(content, list):
            parts = [p.get("text", "") for p in content if isinstance(p, dict)]
            content = "".join(p for p in parts if isinstance(p, str))
        messages.append({"role": message.get("role"), "content": content})
    try:
        return check_messages(messages)
    except ValueError as exc:
        raise _RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from exc


def build_server(
    backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None
) -> _ModelServer:
    """Bind a server for ``backend`` (``port`` 0 picks a free port) without serving yet.

    ``model_name`` is the id ``/v1/models`` lists; it defaults to the back-end's ``model_id``
    when it has one, else its ``name``.
    """
    try:
        server = _ModelServer((host, port), _Handler)
    except OSError as exc:
        raise PolicyError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from exc
    server.backend = backend
    server.model_name = model_name or str(getattr(backend, "model_id", None) or backend.name)
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    """The base URL clients use, ending in ``/v1``."""
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def serve(
    backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None
) -> tuple[ThreadingHTTPServer, str]:
    """Bind a server for ``backend``; return it and its base URL (``http://HOST:PORT/v1``).

    The caller runs ``server.serve_forever()`` (or uses :func:`run_in_thread`) and calls
    ``server.shutdown()`` and ``server.server_close()`` when done.
    """
    server = build_server(backend, host, port, model_name)
    return server, server_url(server)


@dataclass
class RunningServer:
    """A server answering in a background thread; close it (or use ``with``) when done."""

    server: ThreadingHTTPServer
    url: str
    thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_thread(
    backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None
) -> RunningServer:
    """Serve ``backend`` from a daemon thread; for tests and embedding."""
    server, url = serve(backend, host, port, model_name)
    # A short poll interval makes close() quick; idle cost is negligible.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="asmopt-openai-server"
    )
    thread.daemon = True
    thread.start()
    return RunningServer(server, url, thread)


def main(argv: Sequence[str] | None = None) -> int:
    """``asmopt serve-model``: load a model once and answer OpenAI chat-completion requests."""
    parser = argparse.ArgumentParser(
        prog="asmopt serve-model",
        description="Serve a local model over an OpenAI-compatible HTTP API.",
    )
    parser.add_argument("--model", required=True, help="checkpoint directory or .gguf file")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--backend",
        choices=[b for b in BACKEND_NAMES if b != "openai"],
        default="transformers",
        help="how to run the model (default transformers)",
    )
    parser.add_argument("--device", default="auto", help="transformers device: auto, cpu, cuda")
    parser.add_argument("--dtype", default="auto", help="transformers dtype: auto, bfloat16, ...")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs")
    parser.add_argument("--max-model-len", type=int, default=8192, help="vllm: context tokens")
    parser.add_argument("--served-model-name", help="the id /v1/models lists")
    args = parser.parse_args(argv)

    from asmopt.model.search.backends.factory import make_backend

    try:
        options: dict[str, Any] = {}
        if args.backend == "transformers":
            options = {"device": args.device, "dtype": args.dtype}
        elif args.backend == "vllm":
            options = {
                "tensor_parallel_size": args.tensor_parallel_size,
                "max_model_len": args.max_model_len,
                "dtype": args.dtype,
            }
        backend = make_backend(args.backend, args.model, None, **options)
        load = getattr(backend, "load", None)
        if callable(load):
            print(f"loading {args.model} ...", file=sys.stderr, flush=True)
            load()  # fail now, not on the first request
        server, url = serve(backend, args.host, args.port, args.served_model_name)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving {args.model} at {url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
