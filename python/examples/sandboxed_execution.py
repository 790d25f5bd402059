"""Sandboxed execution: what untrusted code cannot do, and a persistent sandbox.
Set BACKEND=docker (and IMAGE=...) to use a container instead of the native sandbox."""
import os

from code_execution_tool import CodeExecutionTool, SandboxExecutor

backend = os.environ.get("BACKEND", "native")
image = os.environ.get("IMAGE", "python:3.11-slim")
tool = CodeExecutionTool(backend=backend, image=image, memory_limit_mb=64, timeout=5)
for name, code in [
    ("network", "import socket; socket.create_connection(('127.0.0.1', 22), timeout=1)"),
    ("memory bomb", "x = []\nwhile True: x.append(bytearray(10 << 20))"),
    ("infinite loop", "while True: pass"),
    ("host files", "print(open('/etc/shadow').read())"),
]:
    result = tool.execute(code)
    print("%-14s -> %s: %s" % (name, result["error_type"], result["error"]))

with SandboxExecutor(backend=backend, image=image) as sandbox:
    sandbox.execute_in_container("open('/work/notes.txt', 'w').write('kept between runs')")
    print(sandbox.execute_in_container("print(open('/work/notes.txt').read())")["output"])
