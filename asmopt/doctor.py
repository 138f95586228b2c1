"""`asmopt doctor`: is everything a verification needs installed and working here?"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | missing | optional
    detail: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""


def _tool(name: str, fix: str, required: bool = True, flag: str = "--version") -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, "missing" if required else "optional", "not found", fix)
    return Check(name, "ok", f"{path}: {_version([path, flag])}")


def _sandbox_check() -> Check:
    from asmopt.executor.sandbox import Sandbox, SandboxError

    try:
        with tempfile.TemporaryDirectory() as tmp, Sandbox() as sb:
            src = Path(tmp) / "t.c"
            src.write_text('#include <stdio.h>\nint main(void){puts("ok");return 0;}\n')
            binary = Path(tmp) / "t"
            subprocess.run(
                ["gcc", "-O1", str(src), "-o", str(binary)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            run = sb.run(binary)
            if run.stdout != b"ok\n":
                return Check(
                    "sandbox",
                    "missing",
                    f"test program printed {run.stdout!r}",
                    "check bubblewrap and user namespaces (sysctl "
                    "kernel.unprivileged_userns_clone=1)",
                )
            return Check("sandbox", "ok", "bubblewrap + seccomp + rlimits: a test program ran")
    except (SandboxError, OSError, subprocess.SubprocessError) as err:
        return Check(
            "sandbox",
            "missing",
            str(err),
            "apt-get install bubblewrap libseccomp2; enable unprivileged user "
            "namespaces; or pass --no-sandbox (unsafe)",
        )


def _module(name: str, extra: str) -> Check:
    if importlib.util.find_spec(name) is None:
        return Check(
            f"python: {name}", "optional", "not installed", f"pip install 'asmopt[{extra}]'"
        )
    return Check(f"python: {name}", "ok", "installed")


def run_checks() -> list[Check]:
    """Every check, required ones first."""
    checks = [
        _tool("gcc", "apt-get install gcc"),
        _tool("as", "apt-get install binutils"),
        _tool("bwrap", "apt-get install bubblewrap"),
        _sandbox_check(),
        _tool("clang", "apt-get install clang (compiler search uses it)", required=False),
        _tool("llvm-mca", "apt-get install llvm (static estimates)", required=False),
        _tool("valgrind", "apt-get install valgrind (instruction counts)", required=False),
        _module("torch", "llm"),
        _module("transformers", "llm"),
        _module("vllm", "vllm"),
        _module("pygls", "server"),
        _module("pyarrow", "data"),
        _module("ray", "ray"),
    ]
    return checks
