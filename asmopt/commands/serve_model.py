"""`asmopt serve-model`: a model behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import sys

import click


@click.command("serve-model")
@click.option("--model", required=True, help="Checkpoint directory or .gguf (vllm: or an id).")
@click.option(
    "--backend",
    type=click.Choice(["transformers", "vllm"]),
    default="transformers",
    show_default=True,
    help="How to run the model.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="0 picks a free port.")
@click.option("--device", default="auto", show_default=True, help="transformers: auto, cpu, cuda.")
@click.option("--dtype", default="auto", show_default=True, help="bfloat16, float32, ...")
@click.option("--tensor-parallel-size", type=int, default=1, show_default=True, help="vllm.")
@click.option("--max-model-len", type=int, default=8192, show_default=True, help="vllm.")
@click.option("--served-model-name", default=None, help="The id /v1/models lists.")
def serve_model(model: str, backend: str, host: str, port: int, device: str, dtype: str,
                tensor_parallel_size: int, max_model_len: int,
                served_model_name: str | None) -> None:  # fmt: skip
    """Serve a model over an OpenAI-compatible HTTP API (for --policy openai --endpoint URL).

    It has no authentication: it binds 127.0.0.1 unless --host says otherwise.
    """
    from asmopt.model.search.openai_server import main as serve_main

    argv = ["--model", model, "--backend", backend, "--host", host, "--port", str(port),
            "--device", device, "--dtype", dtype,
            "--tensor-parallel-size", str(tensor_parallel_size),
            "--max-model-len", str(max_model_len)]  # fmt: skip
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    sys.exit(serve_main(argv))
