"""Dynamic limits: raise a live sandbox's memory limit and the same allocation succeeds."""
from code_execution_tool import ResourceLimiter, SandboxExecutor

grab = "x = bytearray(100 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('got 100 MB')"
with SandboxExecutor(backend="native", memory_limit_mb=64) as sandbox:
    print("64 MB: ", sandbox.execute_in_container(grab)["error_type"])
    print("limits:", ResourceLimiter.set_memory_limit(sandbox, 256))
    print("256 MB:", sandbox.execute_in_container(grab)["output"].strip())
    try:
        sandbox.update_limits(0, 1.0)
    except ValueError as error:
        print("refused:", error)
