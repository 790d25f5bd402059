"""Basic execution: validate, run, read the result (native sandbox; use_sandbox=False for the
plain subprocess)."""
from code_execution_tool import CodeExecutionTool, CodeExecutor

executor = CodeExecutor(default_timeout=10)
print(executor.validate_syntax("def f(:\n    pass"))

tool = CodeExecutionTool()
result = tool.execute("print(sum(range(10)))")
print(result["success"], repr(result["output"]), result["duration_ms"], "ms")

result = tool.execute("[1, 2, 3][10]")
print(result["error_type"], "-", result["error"])
