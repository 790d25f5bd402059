# Builds the package's two Rust parts: the extension module (this directory's crate) and the
# `code-exec` binary (the repository's crate), which every execution uses as its supervisor
# and sandbox helper; it is installed beside the interpreter's scripts.
from setuptools import setup
from setuptools_rust import Binding, RustBin, RustExtension

setup(
    rust_extensions=[
        RustExtension(
            "code_execution_tool._native",
            path="Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api="cp39",
        ),
        RustBin("code-exec", path="../Cargo.toml"),
    ],
)
