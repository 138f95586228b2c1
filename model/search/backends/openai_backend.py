"""The ``openai`` back-end: any OpenAI-compatible chat-completions endpoint, over plain HTTP.

Speaks to ``vllm serve``, llama.cpp's ``llama-server``, ``asmopt serve-model`` or a hosted
API with the standard library only (no ``openai`` package), so importing it costs little.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any

from asmopt.model.search.backends import ChatBackend, CompletionRequest
from asmopt.model.search.policy import PolicyError

__all__ = ["OpenAIBackend", "normalize_base_url"]

_START_HINT = "start `vllm serve MODEL` (or `asmopt serve-model --model PATH`), or check --endpoint"


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000``, ``.../v1/`` or ``.../v1/chat/completions`` -> ``http://host:8000/v1``.

    Raises ``PolicyError`` for something that is not an http(s) URL.
    """
    url = base_url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PolicyError(
            f"endpoint {base_url!r} is not an http(s) URL: pass one like http://127.0.0.1:8000/v1"
        )
    if not parts.path.endswith("/v1"):
        url += "/v1"
    return url


class OpenAIBackend(ChatBackend):
    """Samples completions from an OpenAI-compatible server.

    ``base_url`` may end in ``/v1`` or not. ``model=None`` asks ``/v1/models`` and uses the
    first model listed. ``api_key`` defaults to ``$ASMOPT_API_KEY``, else ``$OPENAI_API_KEY``
    (sent as a bearer token; local servers ignore it). Connection failures and 5xx answers
    are retried ``retries`` times with exponential back-off starting at ``backoff`` seconds.

    Servers that ignore ``n`` (llama.cpp answers one choice) get more requests until ``n``
    completions are in; with a ``seed``, request ``i`` uses ``seed + i`` so they differ.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        if api_key is None:
            api_key = os.environ.get("ASMOPT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._api_key = api_key
        self._model = model
        self._lock = threading.Lock()
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # Loopback traffic never goes through an http_proxy from the environment.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def model_id(self) -> str:
        """The model name sent with each request (asks ``/v1/models`` the first time if unset)."""
        with self._lock:
            if self._model is None:
                self._model = self._first_listed_model()
            return self._model

    def list_models(self) -> list[str]:
        """The model ids the server lists under ``/v1/models``."""
        answer = self._request("GET", "/models")
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise PolicyError(
                f"{self.base_url}/models answered something that is not an OpenAI model "
                f"list: {_snippet(json.dumps(answer))}"
            )
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]

    def _sample(self, request: CompletionRequest) -> list[str]:
        """Ask the server for the completions (more requests if it answers fewer)."""
        model = self.model_id
        # Greedy decoding has one answer; some servers reject n > 1 at temperature 0.
        wanted = 1 if request.greedy else request.n
        texts: list[str] = []
        for attempt in range(wanted):
            missing = wanted - len(texts)
            if missing <= 0:
                break
            body: dict[str, Any] = {
                "model": model,
                "messages": request.messages,
                "n": missing,
                "temperature": float(request.temperature),
                "max_tokens": request.max_new_tokens,
            }
            if request.seed is not None:
                body["seed"] = request.seed + attempt
            texts.extend(
                _completion_texts(self._request("POST", "/chat/completions", body))[:missing]
            )
        return texts

    def _first_listed_model(self) -> str:
        models = self.list_models()
        if not models:
            raise PolicyError(
                f"{self.base_url}/models lists no model: load one in the server, or pass "
                "--model NAME"
            )
        return models[0]

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request with retries; return the decoded JSON answer."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                text = _read_error_body(exc)
                if exc.code >= 500 and not last:
                    self._sleep(attempt)
                    continue
                raise PolicyError(_http_error_message(self.base_url, exc.code, text)) from exc
            except (urllib.error.URLError, OSError, HTTPException) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                if isinstance(reason, TimeoutError | socket.timeout):
                    raise PolicyError(
                        f"{self.base_url} did not answer within {self.timeout:g} s: raise the "
                        "timeout, or lower n or the number of tokens"
                    ) from exc
                if not last:
                    self._sleep(attempt)
                    continue
                raise PolicyError(
                    f"cannot reach {self.base_url}: {_describe(reason)}; {_START_HINT}"
                ) from exc
            return _decode_json(self.base_url, raw)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * (2**attempt))


def _completion_texts(answer: Any) -> list[str]:
    """The message texts of an OpenAI chat completion; ``PolicyError`` if it is not one."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        raise PolicyError(
            "endpoint answered something that is not an OpenAI chat completion: "
            f"{_snippet(json.dumps(answer))}"
        )
    indexed: list[tuple[int, str]] = []
    for position, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise PolicyError(
                "endpoint answered something that is not an OpenAI chat completion: "
                f"{_snippet(json.dumps(answer))}"
            )
        content = message.get("content")
        index = choice.get("index", position)
        indexed.append((index if isinstance(index, int) else position, content or ""))
    return [text for _, text in sorted(indexed, key=lambda pair: pair[0])]


def _decode_json(base_url: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(
            f"endpoint {base_url} answered something that is not an OpenAI chat completion: "
            f"{_snippet(raw.decode('utf-8', 'replace'))}"
        ) from exc


def _read_error_body(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
    except (OSError, HTTPException):
        return ""
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(parsed, dict) and parsed.get("message"):  # some servers flatten the error
        return str(parsed["message"])
    return text.strip()


def _http_error_message(base_url: str, code: int, text: str) -> str:
    detail = _snippet(text) or "(no error text)"
    if code in (401, 403):
        hint = "pass an API key (--api-key, $ASMOPT_API_KEY or $OPENAI_API_KEY)"
    elif code == 404:
        hint = "check --endpoint (it should end in /v1) and the model name"
    elif code >= 500:
        hint = "the server failed; see its log"
    else:
        hint = "the server rejected the request; check the model name and the token limits"
    return f"{base_url} answered HTTP {code}: {detail}; {hint}"


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _snippet(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
