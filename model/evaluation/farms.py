"""Where a bench run's rows are judged: in this process, in a process pool, or as Ray tasks.

Every farm has ``submit(fn, *args) -> Future`` and ``shutdown(cancel=False)``; ``fn`` is
:func:`asmopt.model.evaluation.rows.evaluate_row`, which must be importable by name in a
worker (pool and Ray workers import it; nothing else crosses).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from asmopt.model.evaluation.records import BenchError, BenchOptions, RowResult

__all__ = ["Farm", "InlineFarm", "make_farm"]


class Farm(Protocol):
    """Runs row jobs somewhere and hands back futures."""

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]: ...

    def shutdown(self, cancel: bool = False) -> None: ...


class InlineFarm:
    """Runs each job in this process when submitted (``workers=1``)."""

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        future: Future[RowResult] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:
            future.set_exception(err)
            if isinstance(err, KeyboardInterrupt):
                raise
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


class _ProcessFarm:
    def __init__(self, workers: int) -> None:
        import multiprocessing

        # spawn: children start clean (no inherited threads, locks or sandboxes).
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        return self._pool.submit(fn, *args)

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class _RayFarm:
    def __init__(self, address: str, workers: int) -> None:
        try:
            import ray
        except ImportError as err:
            raise BenchError(
                "--ray needs Ray, which is not installed: pip install 'asmopt[ray]' "
                "(or run without --ray to use a local process pool)"
            ) from err
        self._ray = ray
        self._started_here = False
        if address == "local":
            # A private single-machine cluster on the loopback interface only.
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
            )
            self._started_here = True
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as err:  # ConnectionError, RuntimeError, ... depending on version
                raise BenchError(
                    f"cannot connect to the Ray cluster at {address}: {err}; start one with "
                    "`ray start --head` or check the address (host:port, or ray://host:10001)"
                ) from err
        self._remotes: dict[Callable[..., RowResult], Any] = {}
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., RowResult], *args: Any) -> Future[RowResult]:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        ref = self._remotes[fn].remote(*args)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # already finished or gone
                    self._ray.cancel(ref, force=True)
        if self._started_here:
            self._ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a clear message, when nothing listens at a Ray address."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or "
            "ray://10.0.0.5:10001), 'auto' or 'local'"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise BenchError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head` there, or pass --ray local for a private one on this machine"
        ) from err


def make_farm(options: BenchOptions) -> Farm:
    """The farm ``options`` ask for: Ray tasks, this process (``workers=1``) or a pool."""
    if options.ray_address:
        return _RayFarm(options.ray_address, options.effective_workers())
    if options.effective_workers() == 1:
        return InlineFarm()
    return _ProcessFarm(options.effective_workers())
