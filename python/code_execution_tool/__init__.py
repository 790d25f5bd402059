"""Run untrusted Python code and get back exactly what happened.

The original tool's API (``CodeExecutionTool``, ``CodeExecutor``, ``SandboxExecutor``,
``ResourceLimiter``) over the Rust core of code-exec: syntax validation, then the native Linux
sandbox (namespaces, cgroups, seccomp), a Docker container, or a plain subprocess for trusted
code. Results are dicts with at least ``success``, ``output``, ``error`` and ``error_type``,
plus every field of ``code-exec run --json``.
"""

import json
import numbers
import os
import shutil
import sysconfig

from . import _native
from ._native import BackendUnavailableError

__all__ = [
    "BackendUnavailableError",
    "CodeExecutionTool",
    "CodeExecutor",
    "ResourceLimiter",
    "SandboxExecutor",
]

DEFAULT_IMAGE = _native.DEFAULT_IMAGE
_BACKENDS = ("native", "docker", "none")


def _supervisor():
    """The ``code-exec`` binary installed with this package (the per-run supervisor)."""
    found = os.environ.get("CODE_EXEC_SUPERVISOR")
    if found:
        return found
    candidate = os.path.join(sysconfig.get_path("scripts"), "code-exec")
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("code-exec")


def _number(name, value, whole=False):
    """Checks the type of a numeric argument (the Rust core checks its range)."""
    kind = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if whole else "a number"
        raise TypeError("%s: expected %s, got %s" % (name, expected, type(value).__name__))
    return int(value) if whole else float(value)


def _renamed(error, names):
    """A ValueError from the core, with its field named as this API names it."""
    message = str(error)
    for core, ours in names.items():
        message = message.replace("invalid %s:" % core, "invalid %s:" % ours)
    return ValueError(message)


_LIMIT_NAMES = {
    "memory_mb": "memory_limit_mb",
    "cpu": "cpu_limit",
    "timeout": "timeout",
    "disk_mb": "disk_limit_mb",
}


def _make_tool(backend, memory_limit_mb, cpu_limit, timeout, image, disk_limit_mb=None):
    memory = _number("memory_limit_mb", memory_limit_mb, whole=True)
    disk = None if disk_limit_mb is None else _number("disk_limit_mb", disk_limit_mb, whole=True)
    if disk is not None and disk < 0:
        raise ValueError("invalid disk_limit_mb: %d is negative" % disk)
    cpu = _number("cpu_limit", cpu_limit)
    seconds = _number("timeout", timeout)
    if not isinstance(backend, str):
        raise TypeError("backend: expected a string, got %s" % type(backend).__name__)
    if backend not in _BACKENDS:
        raise ValueError("backend: %r is not one of %s" % (backend, ", ".join(_BACKENDS)))
    if not isinstance(image, str):
        raise TypeError("image: expected a string, got %s" % type(image).__name__)
    if memory < 0:
        raise ValueError("invalid memory_limit_mb: %d is negative" % memory)
    try:
        return _native.Tool(backend, memory, cpu, seconds, image, _supervisor(), disk)
    except ValueError as error:
        raise _renamed(error, _LIMIT_NAMES) from None


def _result(text):
    return json.loads(text)


class CodeExecutionTool:
    """Validates and runs code under limits through one backend.

    ``use_sandbox=False`` runs the ``none`` backend (a plain subprocess: trusted code only).
    ``disk_limit_mb`` is the scratch space: each of the sandbox's ``/work``, ``/tmp`` and
    ``/dev/shm``, and every file (default: half of ``memory_limit_mb``).
    """

    def __init__(
        self,
        use_sandbox=True,
        memory_limit_mb=128,
        cpu_limit=0.5,
        timeout=30,
        backend="native",
        image=DEFAULT_IMAGE,
        disk_limit_mb=None,
    ):
        if not isinstance(use_sandbox, bool):
            raise TypeError("use_sandbox: expected a bool, got %s" % type(use_sandbox).__name__)
        self.use_sandbox = use_sandbox
        self.backend = backend if use_sandbox else "none"
        self.image = image
        self._tool = _make_tool(
            self.backend, memory_limit_mb, cpu_limit, timeout, image, disk_limit_mb
        )
        self.memory_limit_mb = int(memory_limit_mb)
        self.disk_limit_mb = disk_limit_mb
        self.cpu_limit = float(cpu_limit)
        self.timeout = timeout

    def execute(self, code):
        """Runs ``code``; returns the result dict."""
        if not isinstance(code, str):
            raise TypeError("code: expected a string, got %s" % type(code).__name__)
        return _result(self._tool.execute(code))

    def execute_with_monitoring(self, code):
        """Like ``execute``, with ``monitoring``: CPU and memory samples taken while it ran
        (and ``cpu_percent``/``memory_mb`` summaries for the original tool's users)."""
        if not isinstance(code, str):
            raise TypeError("code: expected a string, got %s" % type(code).__name__)
        result = _result(self._tool.execute(code, True))
        samples = result.get("monitoring") or []
        result["resource_usage"] = {
            "cpu_percent": max((s["cpu_percent"] for s in samples), default=0.0),
            "memory_mb": max((s["memory_mb"] for s in samples), default=result["peak_memory_mb"]),
            "samples": len(samples),
        }
        return result

    def update_limits(self, memory_mb=None, cpu_limit=None):
        """Changes the memory and CPU limits of later executions; on error nothing changes."""
        memory = self.memory_limit_mb if memory_mb is None else _number("memory_mb", memory_mb, whole=True)
        cpu = self.cpu_limit if cpu_limit is None else _number("cpu_limit", cpu_limit)
        try:
            self._tool.update_limits(memory, cpu)
        except ValueError as error:
            raise _renamed(error, {"memory_mb": "memory_mb", "cpu": "cpu_limit"}) from None
        except OverflowError:
            raise ValueError("invalid memory_mb: %r is out of range" % memory_mb) from None
        self.memory_limit_mb, self.cpu_limit = memory, cpu


class CodeExecutor:
    """The plain executor: syntax validation and a subprocess run with a timeout (trusted
    code only: no isolation)."""

    def __init__(self, default_timeout=30):
        self.default_timeout = _number("default_timeout", default_timeout)
        self._tool = _make_tool("none", 128, 0.5, self.default_timeout, DEFAULT_IMAGE)

    def validate_syntax(self, code):
        """``{"valid", "error", "line", "column"}``; nothing runs."""
        if not isinstance(code, str):
            raise TypeError("code: expected a string, got %s" % type(code).__name__)
        return json.loads(self._tool.validate_syntax(code))

    def execute(self, code, timeout=None):
        """Runs ``code`` with ``timeout`` seconds (default: ``default_timeout``)."""
        if not isinstance(code, str):
            raise TypeError("code: expected a string, got %s" % type(code).__name__)
        seconds = self.default_timeout if timeout is None else _number("timeout", timeout)
        try:
            self._tool.set_timeout(seconds)
        except ValueError as error:
            raise _renamed(error, {"timeout": "timeout"}) from None
        return _result(self._tool.execute(code))


class SandboxExecutor:
    """A persistent sandbox: a container (``backend="docker"``) or a native sandbox
    (``backend="native"``). Files in ``/work`` persist between executions; processes do not.
    Use it as a context manager, or call ``cleanup()``; it is also removed when collected."""

    def __init__(
        self,
        image=DEFAULT_IMAGE,
        timeout=30,
        memory_limit_mb=128,
        cpu_limit=0.5,
        backend="docker",
        disk_limit_mb=None,
    ):
        if backend == "none":
            raise ValueError("backend: 'none' has no persistent sandboxes; use native or docker")
        self.image = image
        self.backend = backend
        self.timeout = timeout
        self.memory_limit_mb = int(_number("memory_limit_mb", memory_limit_mb, whole=True))
        self.cpu_limit = float(_number("cpu_limit", cpu_limit))
        self.disk_limit_mb = disk_limit_mb
        self._tool = _make_tool(backend, memory_limit_mb, cpu_limit, timeout, image, disk_limit_mb)
        self._sandbox = None

    @property
    def container_id(self):
        """The container's id (docker), else None."""
        return self._sandbox.container_id() if self._sandbox is not None else None

    def create_container(self):
        """Creates the sandbox (done on first use if not called)."""
        if self._sandbox is None:
            self._sandbox = self._tool.create_sandbox()
        return self

    def execute_in_container(self, code):
        """Runs ``code`` in the sandbox; returns the result dict."""
        if not isinstance(code, str):
            raise TypeError("code: expected a string, got %s" % type(code).__name__)
        self.create_container()
        return _result(self._sandbox.execute(code))

    def get_resource_usage(self):
        """``{"cpu_percent", "memory_mb", "peak_memory_mb", "cpu_time_ms", "pids"}``."""
        self.create_container()
        return json.loads(self._sandbox.usage())

    def update_limits(self, memory_mb, cpu_limit):
        """Changes memory and CPU live (a running execution too); on error nothing changes.
        Returns the limits now in force."""
        memory = _number("memory_mb", memory_mb, whole=True)
        cpu = _number("cpu_limit", cpu_limit)
        if memory < 0:
            raise ValueError("invalid memory_mb: %d is negative" % memory)
        self.create_container()
        try:
            limits = json.loads(self._sandbox.update_limits(memory, cpu))
        except ValueError as error:
            raise _renamed(error, {"memory_mb": "memory_mb", "cpu": "cpu_limit"}) from None
        self.memory_limit_mb, self.cpu_limit = memory, cpu
        return limits

    def exists(self):
        return self._sandbox is not None and self._sandbox.exists()

    def cleanup(self):
        """Removes the sandbox (its container, cgroup and files). Safe to call twice."""
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.cleanup()

    def __enter__(self):
        return self.create_container()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def __del__(self):
        try:
            self.cleanup()
        except Exception:
            pass


class ResourceLimiter:
    """The original tool's helpers over a ``SandboxExecutor``."""

    @staticmethod
    def set_cpu_limit(sandbox, cpu_quota):
        return sandbox.update_limits(sandbox.memory_limit_mb, cpu_quota)

    @staticmethod
    def set_memory_limit(sandbox, limit_mb):
        return sandbox.update_limits(limit_mb, sandbox.cpu_limit)

    @staticmethod
    def monitor_resources(sandbox):
        usage = sandbox.get_resource_usage()
        return {"cpu_percent": usage["cpu_percent"], "memory_mb": usage["memory_mb"]}
