"""Resource monitoring: samples taken from outside while the code runs, and a sandbox's usage."""
from code_execution_tool import CodeExecutionTool, ResourceLimiter, SandboxExecutor

tool = CodeExecutionTool(memory_limit_mb=256)
result = tool.execute_with_monitoring(
    "import time\nblocks = []\nfor i in range(5):\n"
    "    blocks.append(bytearray(20 << 20)); time.sleep(0.2)"
)
for sample in result["monitoring"]:
    print("t=%6.0f ms  cpu=%5.1f%%  memory=%6.1f MB" % (
        sample["timestamp_ms"], sample["cpu_percent"], sample["memory_mb"]))
print("summary:", result["resource_usage"])

with SandboxExecutor(backend="native") as sandbox:
    sandbox.execute_in_container("x = sum(i * i for i in range(10**6))")
    print("sandbox usage:", ResourceLimiter.monitor_resources(sandbox))
