# code-exec runner: executes the user's code as __main__ and reports how it ended.
# argv: <report fd> <path of the code file> <import dir, or ""> [--pooled MODULE...]; run from
# `-c`, or compiled ahead as the script /proc/self/fd/N.
# The report channel is separate from the code's stdout/stderr; its wire is in protocol.rs (`report`): while nothing of the
# user's has run, the runner writes "R" (pooled: ready), then either one compile-failure frame
# or "S" (the user's code starts now). Everything after "S" is written where the code can
# reach it, so the host reads it only as the uncaught exception's name and message (frames
# "E" and "X"), never as a verdict. A frame is: kind, decimal length, newline, payload
# (name NUL line NUL column NUL message).
# Pooled (a pre-started sandbox): the modules are imported first, then the runner writes "R"
# and waits for "<length>\n" and the code on stdin (which it writes to the code's path, in
# the sandbox's own /code); the rest of stdin is the code's own.
# Timeouts, memory kills and output caps are seen from outside. Imports are kept off the
# success path. Everything the runner calls once the code runs is bound before it does.
import sys


def _code_exec_main():
    fd = int(sys.argv[1])
    path = sys.argv[2]
    import_dir = sys.argv[3]
    import os

    # Run compiled ahead from an inherited fd (`python3 /proc/self/fd/N`, see runner.rs): the
    # interpreter has read it; the fd is closed before anything of the user's runs.
    if sys.argv[0].startswith("/proc/self/fd/"):
        os.close(int(sys.argv[0][len("/proc/self/fd/"):]))

    os.set_inheritable(fd, False)
    # Bound now: the code may replace any builtin or os function before the runner's last
    # report; these names are the runner's own.
    write, getattr_, isinstance_, len_, str_, type_ = (
        os.write, getattr, isinstance, len, str, type,
    )
    base_exception, system_exit = BaseException, SystemExit

    def report(kind, name, line=0, column=0, message=""):
        try:
            payload = ("%s\0%d\0%d\0%s" % (name, line or 0, column or 0, message))[:65536]
            payload = payload.encode("utf-8", "backslashreplace")
            write(fd, b"%s%d\n%s" % (kind, len_(payload), payload))
        except base_exception:
            pass

    def describe(exc):
        try:
            return str_(exc)
        except base_exception:
            return "<exception str() failed>"

    def class_name(exc):
        try:
            name = type_(exc).__qualname__
            if isinstance_(name, str_):
                return name
        except base_exception:
            pass
        return "BaseException"

    # Bound now, as the names above: the interpreter's own traceback printer.
    print_exception = sys.__excepthook__
    if sys.argv[4:5] == ["--pooled"]:
        for name in sys.argv[5:]:
            try:
                __import__(name)
            except BaseException:
                pass
        # Ready: the host hands this sandbox out only after this byte.
        write(fd, b"R")
        header = b""
        while not header.endswith(b"\n") and len(header) < 32:
            byte = os.read(0, 1)
            if not byte:
                return 0
            header += byte
        size = int(header)
        parts = []
        while size > 0:
            chunk = os.read(0, min(size, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        source = b"".join(parts)
        # The code's file, as a cold run has it (a pooled sandbox's /code is a small tmpfs of
        # its own): tracebacks read it, and multiprocessing's spawn and forkserver children
        # run it as __mp_main__.
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        try:
            view = memoryview(source)
            while view:
                view = view[os.write(out, view):]
        finally:
            os.close(out)
    else:
        with open(path, "rb") as f:
            source = f.read()
    sys.argv = [path]

    # The builtin compile() first builds the interpreter's AST types (PyAST_Check: some
    # 7 million instructions, a millisecond of a cold start); the C API's compiler gives the
    # same code object, warnings and SyntaxError without them. Forked from the zygote, which
    # built them already, or where that API cannot be reached, the builtin does it.
    compiler = None
    if not _code_exec_forked and b"\0" not in source:
        try:
            compiler = _code_exec_c_compiler()
        except BaseException:
            compiler = None
    try:
        if compiler is None:
            code = compile(source, path, "exec", dont_inherit=True)
        else:
            code = compiler(source, os.fsencode(path), 257, None, -1)
    except BaseException as exc:
        del source
        syntax = isinstance(exc, SyntaxError)
        line = getattr(exc, "lineno", 0) if syntax else 0
        column = getattr(exc, "offset", 0) if syntax else 0
        message = getattr(exc, "msg", None) if syntax else None
        report(b"C", type(exc).__name__, line, column, message or describe(exc))
        # As the interpreter prints a script it could not compile: no traceback (the
        # printer would otherwise show the exception's own, this runner's frame).
        exc.__traceback__ = None
        sys.__excepthook__(type(exc), exc, None)
        return 1
    del source

    main = type(sys)("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    # As `python -c` puts the working directory first: files the code writes to its own work
    # directory import (the interpreter runs isolated, so nothing else is on the path).
    if import_dir:
        sys.path.insert(0, import_dir)
    # From here on the code runs: nothing the channel carries can say "syntax" any more.
    write(fd, b"S")
    try:
        exec(code, main.__dict__)
    except system_exit as exc:
        status = getattr_(exc, "code", None)
        if status is not None and not isinstance_(status, int):
            report(b"X", "SystemExit", 0, 0, describe(status))
        raise
    except base_exception as exc:
        # Report first, with small allocations: after a MemoryError little may be left.
        report(b"E", class_name(exc), 0, 0, describe(exc))
        tb = exc.__traceback__
        if tb is not None:
            # Hide the runner's own frame: the traceback starts in the user's code.
            exc.__traceback__ = tb = tb.tb_next
        print_exception(type_(exc), exc, tb)
        return 1
    return 0


def _code_exec_c_compiler():
    # Py_CompileStringExFlags(source, filename, Py_file_input, no flags, the interpreter's
    # optimization level), called with the GIL held as ctypes.pythonapi calls it, from the
    # bare _ctypes module (the ctypes package costs more to import than it saves); _ctypes
    # is taken off sys.modules again, so the code finds the interpreter as a fresh one.
    import _ctypes

    try:

        class Text(_ctypes._SimpleCData):
            _type_ = "z"

        class Int(_ctypes._SimpleCData):
            _type_ = "i"

        class Pointer(_ctypes._SimpleCData):
            _type_ = "P"

        class Object(_ctypes._SimpleCData):
            _type_ = "O"

        class PythonApi(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI
            _restype_ = Object
            _argtypes_ = (Text, Text, Int, Pointer, Int)

        class Interpreter:
            _handle = _ctypes.dlopen(None, 0)

        return PythonApi(("Py_CompileStringExFlags", Interpreter))
    finally:
        sys.modules.pop("_ctypes", None)


def _code_exec_exit_status(exc):
    # What the interpreter makes of an uncaught SystemExit (its exit status, and a message
    # printed for a non-integer code), for runs that end without the interpreter's own exit.
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(1 << 63) <= code < (1 << 63) else 255
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:
        pass
    return 1


def _code_exec_end_forked(status):
    # A run forked from the zygote ends as multiprocessing's forked children end: the visible
    # steps of the interpreter's finalization, in its order (non-daemon threads joined, atexit
    # handlers, streams flushed, the program's own module finalized so that its objects'
    # __del__ and unflushed files run), then the C library's exit. The rest of a finalization only frees
    # memory the process is about to lose, and in a forked process it costs page copies.
    # `sys` is bound here: when the code never ran (it did not compile), __main__ is still
    # this runner's module, whose names are cleared below.
    import sys

    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit

    atexit._run_exitfuncs()

    def flush():
        ok = True
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:
                ok = ok and stream is not sys.stdout
        return ok

    failed = not flush()
    main = sys.modules.get("__main__")
    names = getattr(main, "__dict__", None)
    if isinstance(names, dict):
        try:
            for first in (True, False):
                for name in list(names):
                    if name != "__builtins__" and (not first or name[:1] == "_"):
                        names[name] = None
        except BaseException:
            pass
    import gc

    gc.collect()
    if not flush() or failed:
        status = 120
    # The zygote's code process then exits with it through the C library's exit(), which
    # flushes what C code buffered in stdio (printf from an extension) as a normal exit does,
    # and skips the interpreter's teardown.
    sys._code_exec_exit_status = status


_code_exec_forked = globals().get("_code_exec_forked", False)
try:
    _code_exec_status = _code_exec_main()
except SystemExit as _code_exec_exit:
    if not _code_exec_forked:
        raise
    _code_exec_status = _code_exec_exit_status(_code_exec_exit)
    del _code_exec_exit
try:
    sys.stdout.flush()
except BaseException:
    pass
if _code_exec_forked:
    _code_exec_end_forked(_code_exec_status)
elif _code_exec_status:
    sys.exit(_code_exec_status)
