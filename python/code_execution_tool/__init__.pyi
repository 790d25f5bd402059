from typing import Any, Dict, Optional

__all__ = [
    "BackendUnavailableError",
    "CodeExecutionTool",
    "CodeExecutor",
    "ResourceLimiter",
    "SandboxExecutor",
]

DEFAULT_IMAGE: str

Result = Dict[str, Any]
"""``success``, ``verdict``, ``output``, ``stderr``, ``error``, ``error_type``, ``exit_code``, ``signal``,
``duration_ms``, ``cpu_time_ms``, ``peak_memory_mb``, ``truncated``, ``backend``, ``line``,
``column``, ``limits_enforced`` (and ``monitoring`` when monitored)."""

class BackendUnavailableError(Exception):
    """The backend cannot run here; the message says what to do."""

class CodeExecutionTool:
    use_sandbox: bool
    backend: str
    image: str
    memory_limit_mb: int
    cpu_limit: float
    timeout: float
    def __init__(
        self,
        use_sandbox: bool = True,
        memory_limit_mb: int = 128,
        cpu_limit: float = 0.5,
        timeout: float = 30,
        backend: str = "native",
        image: str = "python:3.11-slim",
    ) -> None: ...
    def execute(self, code: str) -> Result: ...
    def execute_with_monitoring(self, code: str) -> Result: ...
    def update_limits(
        self, memory_mb: Optional[int] = None, cpu_limit: Optional[float] = None
    ) -> None: ...

class CodeExecutor:
    default_timeout: float
    def __init__(self, default_timeout: float = 30) -> None: ...
    def validate_syntax(self, code: str) -> Dict[str, Any]: ...
    def execute(self, code: str, timeout: Optional[float] = None) -> Result: ...

class SandboxExecutor:
    image: str
    backend: str
    timeout: float
    memory_limit_mb: int
    cpu_limit: float
    def __init__(
        self,
        image: str = "python:3.11-slim",
        timeout: float = 30,
        memory_limit_mb: int = 128,
        cpu_limit: float = 0.5,
        backend: str = "docker",
    ) -> None: ...
    @property
    def container_id(self) -> Optional[str]: ...
    def create_container(self) -> "SandboxExecutor": ...
    def execute_in_container(self, code: str) -> Result: ...
    def get_resource_usage(self) -> Dict[str, float]: ...
    def update_limits(self, memory_mb: int, cpu_limit: float) -> Dict[str, Any]: ...
    def exists(self) -> bool: ...
    def cleanup(self) -> None: ...
    def __enter__(self) -> "SandboxExecutor": ...
    def __exit__(self, *exc: object) -> bool: ...

class ResourceLimiter:
    @staticmethod
    def set_cpu_limit(sandbox: SandboxExecutor, cpu_quota: float) -> Dict[str, Any]: ...
    @staticmethod
    def set_memory_limit(sandbox: SandboxExecutor, limit_mb: int) -> Dict[str, Any]: ...
    @staticmethod
    def monitor_resources(sandbox: SandboxExecutor) -> Dict[str, float]: ...
