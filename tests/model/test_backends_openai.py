"""The HTTP back-end against asmopt's own OpenAI-compatible server and misbehaving stubs."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from asmopt.model.search.backends import ChatBackend
from asmopt.model.search.backends.openai_backend import OpenAIBackend, normalize_base_url
from asmopt.model.search.openai_server import RunningServer, run_in_thread
from asmopt.model.search.policy import PolicyError

MESSAGES = [{"role": "user", "content": "make it fast"}]


class EchoBackend:
    """A deterministic stand-in model: says what it was asked, and records every call."""

    name = "transformers"
    model_id = "echo-1"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def complete(
        self,
        messages: list[dict[str, str]],
        n: int = 1,
        temperature: float = 0.5,
        max_new_tokens: int = 2000,
        seed: int | None = None,
    ) -> list[str]:
        self.calls.append(
            {"messages": messages, "n": n, "temperature": temperature, "max": max_new_tokens}
            | {"seed": seed}
        )
        if messages[-1]["content"] == "explode":
            raise PolicyError("model vanished: load it again")
        return [f"{messages[-1]['content']} #{i} seed={seed}" for i in range(n)]


@pytest.fixture
def echo() -> Iterator[tuple[EchoBackend, RunningServer]]:
    backend = EchoBackend()
    with run_in_thread(backend) as running:
        yield backend, running


class Stub:
    """A loopback HTTP server that plays back canned answers: (status, body[, delay])."""

    def __init__(self, answers: list[tuple[int, str] | tuple[int, str, float]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length)))

            def _answer(self, body: Any) -> None:
                stub.requests.append({"path": self.path, "body": body})
                answer = stub.answers[min(len(stub.requests), len(stub.answers)) - 1]
                if len(answer) == 3:
                    time.sleep(answer[2])
                data = answer[1].encode()
                try:
                    self.send_response(answer[0])
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[type[Stub]]:
    made: list[Stub] = []

    def make(answers: list[Any]) -> Stub:
        made.append(Stub(answers))
        return made[-1]

    yield make  # type: ignore[misc]
    for s in made:
        s.close()


def completion(*texts: str) -> str:
    return json.dumps(
        {
            "object": "chat.completion",
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}}
                for i, t in enumerate(texts)
            ],
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
        "http://127.0.0.1:8000/v1/chat/completions",
    ],
)
def test_base_url_with_or_without_v1(given: str) -> None:
    assert normalize_base_url(given) == "http://127.0.0.1:8000/v1"


def test_not_a_url_is_refused() -> None:
    with pytest.raises(PolicyError, match="not an http"):
        OpenAIBackend("127.0.0.1:8000")


# --- against asmopt's own server --------------------------------------------------------------


def test_round_trip_through_our_server(echo: tuple[EchoBackend, RunningServer]) -> None:
    backend, running = echo
    assert running.url.startswith("http://127.0.0.1:")
    assert running.url.endswith("/v1")
    client = OpenAIBackend(running.url, retries=0)
    assert isinstance(client, ChatBackend)
    texts = client.complete(MESSAGES, n=3, temperature=0.8, max_new_tokens=17, seed=4)
    assert texts == [f"make it fast #{i} seed=4" for i in range(3)]
    assert backend.calls == [
        {"messages": MESSAGES, "n": 3, "temperature": 0.8, "max": 17, "seed": 4}
    ]


def test_model_none_takes_the_first_listed(echo: tuple[EchoBackend, RunningServer]) -> None:
    _, running = echo
    client = OpenAIBackend(running.url.removesuffix("/v1"))
    assert client.list_models() == ["echo-1"]
    assert client.model_id == "echo-1"


def test_temperature_zero_asks_once(echo: tuple[EchoBackend, RunningServer]) -> None:
    backend, running = echo
    texts = OpenAIBackend(running.url).complete(MESSAGES, n=3, temperature=0)
    assert texts == ["make it fast #0 seed=None"] * 3
    assert [call["n"] for call in backend.calls] == [1]


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_answers_openai_shapes(echo: tuple[EchoBackend, RunningServer]) -> None:
    _, running = echo
    status, answer = post(
        running.url + "/chat/completions",
        {
            "model": "echo-1",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        },
    )
    assert status == 200
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "echo-1"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi #0 seed=None"},
            "finish_reason": "stop",
        }
    ]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": "hi"}, 400, "messages must be a list"),
        ({"messages": [{"role": "user"}]}, 400, "string 'content'"),
        ({"messages": MESSAGES, "n": 0}, 400, "n must be a positive integer"),
        ({"messages": MESSAGES, "temperature": -2}, 400, "temperature"),
        ({"messages": MESSAGES, "seed": "x"}, 400, "seed must be an integer"),
        ({"messages": MESSAGES, "stream": True}, 400, "streaming is not supported"),
        ({"messages": [{"role": "user", "content": "explode"}]}, 503, "model vanished"),
    ],
)
def test_server_errors_are_json(
    echo: tuple[EchoBackend, RunningServer], body: dict[str, Any], status: int, words: str
) -> None:
    _, running = echo
    got, answer = post(running.url + "/chat/completions", body)
    assert got == status
    assert words in answer["error"]["message"]


def test_server_rejects_non_json_and_unknown_paths(echo: tuple[EchoBackend, RunningServer]) -> None:
    _, running = echo
    status, answer = post(running.url + "/chat/completions", None, raw=b"{not json")
    assert status == 400
    assert "not JSON" in answer["error"]["message"]
    status, answer = post(running.url + "/embeddings", {})
    assert status == 404
    assert "no such endpoint" in answer["error"]["message"]


def test_client_reports_the_servers_error_text(echo: tuple[EchoBackend, RunningServer]) -> None:
    _, running = echo
    client = OpenAIBackend(running.url, model="echo-1", retries=0)
    with pytest.raises(PolicyError, match=r"HTTP 503: model vanished: load it again"):
        client.complete([{"role": "user", "content": "explode"}])


# --- misbehaving servers -----------------------------------------------------------------------


def test_refused_port_says_how_to_start_a_server() -> None:
    port = free_port()
    client = OpenAIBackend(f"http://127.0.0.1:{port}", model="m", retries=1, backoff=0.01)
    message = f"cannot reach http://127.0.0.1:{port}/v1: connection refused; start `vllm serve"
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        client.complete(MESSAGES)
    assert "--endpoint" in str(err.value)


def test_garbage_answer_is_named(stub: Any) -> None:
    server = stub([(200, "<html><body>Welcome to nginx!</body></html>")])
    client = OpenAIBackend(server.url, model="m", retries=0)
    with pytest.raises(PolicyError, match=r"not an OpenAI chat completion: <html><body>Welcome"):
        client.complete(MESSAGES)


def test_json_that_is_not_a_completion_is_named(stub: Any) -> None:
    server = stub([(200, json.dumps({"result": "ok"}))])
    with pytest.raises(PolicyError, match=r"not an OpenAI chat completion: \{\"result\""):
        OpenAIBackend(server.url, model="m", retries=0).complete(MESSAGES)


def test_5xx_is_retried_then_succeeds(stub: Any) -> None:
    server = stub([(500, "boom"), (502, "bad gateway"), (200, completion("ok"))])
    client = OpenAIBackend(server.url, model="m", retries=2, backoff=0.01)
    assert client.complete(MESSAGES) == ["ok"]
    assert len(server.requests) == 3


def test_5xx_gives_up_after_the_retries(stub: Any) -> None:
    server = stub([(500, json.dumps({"error": {"message": "CUDA error: device lost"}}))])
    client = OpenAIBackend(server.url, model="m", retries=1, backoff=0.01)
    with pytest.raises(PolicyError, match=r"HTTP 500: CUDA error: device lost"):
        client.complete(MESSAGES)
    assert len(server.requests) == 2


def test_4xx_is_not_retried_and_shows_the_error(stub: Any) -> None:
    error = {"error": {"message": "This model's maximum context length is 4096 tokens"}}
    server = stub([(400, json.dumps(error))])
    client = OpenAIBackend(server.url, model="m", retries=2, backoff=0.01)
    with pytest.raises(PolicyError, match=r"HTTP 400: This model's maximum context length"):
        client.complete(MESSAGES)
    assert len(server.requests) == 1


def test_401_asks_for_an_api_key(stub: Any) -> None:
    server = stub([(401, "unauthorized")])
    with pytest.raises(PolicyError, match="API key"):
        OpenAIBackend(server.url, model="m", api_key="wrong").complete(MESSAGES)


def test_server_that_ignores_n_gets_more_requests(stub: Any) -> None:
    server = stub([(200, completion("a")), (200, completion("b")), (200, completion("c"))])
    client = OpenAIBackend(server.url, model="m")
    assert client.complete(MESSAGES, n=3, temperature=0.5, max_new_tokens=9, seed=10) == [
        "a",
        "b",
        "c",
    ]
    bodies = [r["body"] for r in server.requests]
    assert [b["n"] for b in bodies] == [3, 2, 1]
    assert [b["seed"] for b in bodies] == [10, 11, 12]  # distinct samples, still repeatable
    assert {b["max_tokens"] for b in bodies} == {9}
    assert {b["model"] for b in bodies} == {"m"}


def test_slow_server_times_out(stub: Any) -> None:
    server = stub([(200, completion("late"), 2.0)])
    client = OpenAIBackend(server.url, model="m", timeout=0.3, retries=2)
    with pytest.raises(PolicyError, match=r"did not answer within 0.3 s"):
        client.complete(MESSAGES)
    assert len(server.requests) == 1


def test_empty_model_list_says_what_to_do(stub: Any) -> None:
    server = stub([(200, json.dumps({"object": "list", "data": []}))])
    with pytest.raises(PolicyError, match="lists no model"):
        OpenAIBackend(server.url).complete(MESSAGES)


# --- the real thing: tiny model behind the server -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from asmopt.model.search.backends.transformers_backend import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model-http"))


@pytest.mark.llm
def test_tiny_model_over_http(tiny_model_dir: Path) -> None:
    from asmopt.model.search.backends.transformers_backend import TransformersBackend

    local = TransformersBackend(tiny_model_dir, device="cpu")
    with run_in_thread(local) as running:
        client = OpenAIBackend(running.url)
        assert client.model_id == tiny_model_dir.name
        texts = client.complete(MESSAGES, n=3, temperature=1.0, max_new_tokens=6, seed=3)
        assert len(texts) == 3
        assert texts == local.complete(MESSAGES, n=3, temperature=1.0, max_new_tokens=6, seed=3)
        greedy = client.complete(MESSAGES, n=2, temperature=0, max_new_tokens=6)
        assert greedy[0] == greedy[1]


@pytest.mark.llm
def test_serve_model_main_reports_bad_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from asmopt.model.search.openai_server import main

    assert main(["--model", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "model not found" in capsys.readouterr().err
