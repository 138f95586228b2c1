"""The LSP wire as asmopt speaks it: pygls' protocol with the rules a client cannot wedge.

- Framing (:func:`serve_stdio`): headers are read case-insensitively; a message whose
  ``Content-Length`` is missing, malformed or wrong is answered with a parse error (-32700)
  and reading resumes at the next header, so one bad message never silences the server.
  End of input ends the server.
- The loop it runs in (:func:`run_until_exit`) ends even when a task will not: asyncio's own
  runner can wait forever at exit for a task that was starting a process (CPython
  gh-125502), and the client then waits for an ``exit`` that never comes.
- Before ``initialize`` every request is answered with -32002 (server not initialized) and
  notifications other than ``exit`` are dropped, as the protocol says.
- A request whose parameters do not fit the method's type gets -32602 (invalid params).
- Open buffers asmopt tracks are kept by :class:`asmopt.server.documents.Buffer` alone:
  pygls' second copy would cost a whole-text split on every keystroke.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from lsprotocol import types
from pygls.protocol import LanguageServerProtocol

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)
_NEXT_HEADER = re.compile(rb"content-length[ \t]*:", re.I)
MAX_HEADER_BYTES = 64 * 1024
EXIT_GRACE = 2.0  # seconds the tasks left at exit get to end once cancelled


class EncodedResult(str):
    """A result already encoded as JSON: sent as it is. Big answers (thousands of lenses or
    symbols) are encoded once per buffer version instead of being walked by cattrs and
    re-encoded on every request."""


def encoded(value: Any) -> EncodedResult:
    return EncodedResult(json.dumps(value, separators=(",", ":")))


class _GuardedWriter:
    """The client's writer, until a write to it fails (the client went away): then nothing
    more is written, and the failure is not raised into pygls, which would report it to the
    client with another write, failing the same way, without end (each time logging a
    traceback into a stderr that nobody may read any more)."""

    def __init__(self, writer: Any, protocol: AsmoptProtocol) -> None:
        self._writer = writer
        self._protocol = protocol

    def write(self, data: bytes) -> Any:
        if self._protocol.client_gone:
            return None
        try:
            return self._writer.write(data)
        except (OSError, ValueError):  # a broken pipe, a reset, a closed file
            self._protocol.lost_client()
            return None

    def close(self) -> Any:
        return self._writer.close()


class AsmoptProtocol(LanguageServerProtocol):
    """pygls' protocol plus the rules above; and once a message cannot be written (the
    client went away), nothing more is sent."""

    client_gone = False

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(_GuardedWriter(writer, self), include_headers)

    def lost_client(self) -> None:
        if not self.client_gone:
            self.client_gone = True
            logger.error("the client went away: nothing more is sent")

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if error is None and isinstance(result, EncodedResult):
            self._result_types.pop(msg_id, None)
            body = f'{{"jsonrpc":"2.0","id":{json.dumps(msg_id)},"result":{result}}}'
            data = body.encode("utf-8")
            if self.writer is not None:
                self.writer.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
            return
        super()._send_response(msg_id, result, error)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_seen = False

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method == types.INITIALIZE:
            self.initialize_seen = True
        elif not self.initialize_seen and method is not None and method != types.EXIT:
            msg_id = getattr(message, "id", None)
            if msg_id is not None:
                self.send_error(
                    msg_id,
                    SERVER_NOT_INITIALIZED,
                    f"{method} before initialize: send initialize first",
                )
            return
        super().handle_message(message)

    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    # Tracked buffers live in DocumentStore only (see the module docstring).
    def _tracked(self, uri: str) -> bool:
        documents = getattr(self._server, "documents", None)
        return documents is not None and documents.get(uri) is not None

    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):  # type: ignore[override]
        if not self._tracked(params.text_document.uri):
            for change in params.content_changes:
                self.workspace.update_text_document(params.text_document, change)
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    lsp_text_document__did_change.method_name = types.TEXT_DOCUMENT_DID_CHANGE  # type: ignore[attr-defined]


def _decode(protocol: AsmoptProtocol, body: bytes) -> None:
    """Parse and handle one message body; errors are answered, never raised."""
    try:
        raw = json.loads(body)
    except ValueError as err:
        protocol.send_error(None, PARSE_ERROR, f"the message is not JSON: {err}")
        return
    if not isinstance(raw, dict):
        protocol.send_error(None, PARSE_ERROR, "a message must be a JSON object")
        return
    try:
        message = json.loads(body, object_hook=protocol.structure_message)
    except Exception as err:
        if "method" in raw and raw.get("id") is not None:
            protocol.send_error(
                raw["id"], INVALID_PARAMS, f"invalid params for {raw.get('method')}: {err}"
            )
        else:
            logger.warning("dropped a malformed message: %s", err)
        return
    if not hasattr(message, "jsonrpc"):
        if raw.get("id") is not None:
            protocol.send_error(raw["id"], PARSE_ERROR, "not a JSON-RPC 2.0 message")
        return
    try:
        protocol.handle_message(message)
    except Exception:
        logger.exception("unable to handle message")


def frames(buffer: bytearray) -> list[bytes | None]:
    """Cut complete messages off the front of ``buffer``; ``None`` stands for a broken one
    (already skipped). What is incomplete stays in ``buffer``."""
    found: list[bytes | None] = []
    while buffer:
        end = buffer.find(_HEADER_END)
        if end < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                _resync(buffer, 1, found)
                continue
            break
        header = bytes(buffer[:end])
        match = _CONTENT_LENGTH.search(header)
        if match is None:
            _resync(buffer, 1, found)
            continue
        length = int(match.group(1))
        body_start = end + len(_HEADER_END)
        available = bytes(buffer[body_start : body_start + length])
        nxt = _NEXT_HEADER.search(available)
        if len(available) < length:
            # Too few bytes yet: wait, unless the next message has already begun (a
            # Content-Length that was too large): then what came before it is this body.
            if nxt is not None and _is_json(available[: nxt.start()]):
                found.append(available[: nxt.start()])
                del buffer[: body_start + nxt.start()]
                continue
            break
        if _is_json(available) or nxt is None:
            found.append(available)
            del buffer[: body_start + length]
            continue
        # A wrong length: the body is what lies before the next header, if that is JSON.
        if _is_json(available[: nxt.start()]):
            found.append(available[: nxt.start()])
            del buffer[: body_start + nxt.start()]
        else:
            _resync(buffer, 1, found)
    return found


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _resync(buffer: bytearray, skip: int, found: list[bytes | None]) -> None:
    """Drop bytes up to the next ``Content-Length`` header after ``skip``."""
    nxt = _NEXT_HEADER.search(buffer, skip)
    keep = nxt.start() if nxt is not None else max(0, len(buffer) - 32)
    del buffer[: max(keep, 1) if nxt is not None else keep]
    found.append(None)


async def serve_stdio(protocol: AsmoptProtocol, stdin: int | None = None) -> None:
    """Read LSP messages from ``stdin`` (a file descriptor) until end of input. The reading
    thread is a daemon: a server told to exit never waits for a read that may not return."""
    fd = sys.stdin.fileno() if stdin is None else stdin
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            if not chunk:
                return

    threading.Thread(target=read, name="lsp-stdin", daemon=True).start()
    buffer = bytearray()
    while True:
        chunk = await chunks.get()
        if not chunk:
            logger.info("end of input: stopping")
            return
        buffer += chunk
        for body in frames(buffer):
            if body is None:
                protocol.send_error(
                    None, PARSE_ERROR, "malformed message framing (bad or missing Content-Length)"
                )
                print("asmopt serve: skipped a malformed message", file=sys.stderr, flush=True)
                continue
            _decode(protocol, body)


def run_until_exit(main: Coroutine[Any, Any, Any], grace: float = EXIT_GRACE) -> Any:
    """Run ``main`` in a new event loop, as :func:`asyncio.run` does, and at the end cancel
    the tasks left and give them ``grace`` seconds (then the default executor as long).

    :func:`asyncio.run` waits for the cancelled tasks without a bound, and a task cancelled
    while ``asyncio.create_subprocess_exec`` connects the child's pipes never ends
    (CPython gh-125502, in every 3.11 and 3.12): a server told to exit while it started a
    worker would hang. The process being started is killed by asyncio as the task is
    cancelled; only the task that waits for it is left behind."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_left(loop, grace)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(_bounded(loop.shutdown_default_executor(), grace))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_left(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, stuck = loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error("a task failed while the server stopped", exc_info=task.exception())
    for task in stuck:
        logger.warning("left a task that did not end within %.0f s of exit: %r", grace, task)
        # Forgotten on purpose: the loop closes under it. Without this, its destruction
        # would print "Task was destroyed but it is pending" for a task already reported.
        task._log_destroy_pending = False  # type: ignore[attr-defined]


async def _bounded(aw: Coroutine[Any, Any, Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        logger.warning("the server's threads did not end within %.0f s of exit", seconds)
