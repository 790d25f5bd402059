//! The zygote's embedded interpreter: libpython loaded with `dlopen`, and the handful of C API
//! calls the zygote makes (configure, initialize, fork hooks, run source, finalize). Nothing
//! else in the crate touches the C API. Every `unsafe` block says why it is sound.
//! Runs in the zygote and the code processes forked from it.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

/// An initialized interpreter living in this process. Not `Send`: the C API is used from the
/// thread that initialized it (the zygote is single-threaded).
pub struct EmbeddedPython {
    before_fork: unsafe extern "C" fn(),
    after_fork_parent: unsafe extern "C" fn(),
    after_fork_child: unsafe extern "C" fn(),
    run_simple: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    add_module: unsafe extern "C" fn(*const c_char) -> *mut c_void,
    module_dict: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    dict_item: unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void,
    eval_code: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> *mut c_void,
    print_error: unsafe extern "C" fn(),
    decref: unsafe extern "C" fn(*mut c_void),
    long_value: unsafe extern "C" fn(*mut c_void) -> libc::c_long,
    version: String,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// The legacy global flags that give the interpreter the configuration of `python3 -I -u`:
/// isolated (no environment, no user site, safe path), unbuffered standard streams.
const FLAGS: [&str; 4] = [
    "Py_IsolatedFlag",
    "Py_IgnoreEnvironmentFlag",
    "Py_NoUserSiteDirectory",
    "Py_UnbufferedStdioFlag",
];
/// Set too when `site` must not run at start-up (`-S`).
const NO_SITE_FLAG: &str = "Py_NoSiteFlag";

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc, valid until the
    // next dl* call on this thread; it is copied at once.
    let err = unsafe { libc::dlerror() };
    if err.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned()
    }
}

struct Library(*mut c_void);

impl Library {
    fn symbol(&self, name: &str) -> Result<*mut c_void, String> {
        let cname = CString::new(name).map_err(|_| format!("bad symbol name {name}"))?;
        // SAFETY: the handle is a live dlopen handle (never closed) and the name is a
        // NUL-terminated string.
        let ptr = unsafe { libc::dlsym(self.0, cname.as_ptr()) };
        if ptr.is_null() {
            Err(format!("libpython has no {name}: {}", dl_error()))
        } else {
            Ok(ptr)
        }
    }
}

macro_rules! function {
    ($lib:expr, $name:literal, $ty:ty) => {{
        let ptr = $lib.symbol($name)?;
        // SAFETY: the symbol is the C API function of that name, whose C signature is $ty
        // (stable across CPython 3.8–3.13); a function pointer has the size of a data pointer.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(ptr) }
    }};
}

impl EmbeddedPython {
    /// Loads `library` (RTLD_GLOBAL, so that extension modules imported later find the C API)
    /// and initializes it as the interpreter at `program` would start (`sys.executable`, the
    /// prefix and `sys.path` are computed from that path), with its signal handlers installed
    /// exactly as the `python3` command installs them; `site` runs at start-up only if `site`.
    pub fn initialize(
        library: &Path,
        program: &Path,
        site: bool,
    ) -> Result<EmbeddedPython, String> {
        use std::os::unix::ffi::OsStrExt;
        let lib_c = CString::new(library.as_os_str().as_bytes())
            .map_err(|_| "NUL byte in the libpython path".to_string())?;
        let program_c = CString::new(program.as_os_str().as_bytes())
            .map_err(|_| "NUL byte in the interpreter path".to_string())?;
        // SAFETY: a NUL-terminated path; the handle is kept for the life of the process.
        let handle = unsafe { libc::dlopen(lib_c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            return Err(format!("cannot load {}: {}", library.display(), dl_error()));
        }
        let lib = Library(handle);
        let no_site = (!site).then_some(NO_SITE_FLAG);
        for flag in FLAGS.into_iter().chain(no_site) {
            let ptr = lib.symbol(flag)? as *mut c_int;
            // SAFETY: the symbol is a global `int` of libpython, written before the interpreter
            // is initialized and by this single thread.
            unsafe { ptr.write(1) };
        }
        let decode = function!(
            lib,
            "Py_DecodeLocale",
            unsafe extern "C" fn(*const c_char, *mut usize) -> *mut libc::wchar_t
        );
        let set_program_name = function!(
            lib,
            "Py_SetProgramName",
            unsafe extern "C" fn(*const libc::wchar_t)
        );
        let initialize = function!(lib, "Py_InitializeEx", unsafe extern "C" fn(c_int));
        let get_version = function!(
            lib,
            "Py_GetVersion",
            unsafe extern "C" fn() -> *const c_char
        );
        // SAFETY: Py_DecodeLocale may be called before initialization; it returns a
        // heap-allocated wide string (kept alive for ever, as Py_SetProgramName requires) or NULL.
        let wide = unsafe { decode(program_c.as_ptr(), std::ptr::null_mut()) };
        if wide.is_null() {
            return Err("cannot decode the interpreter path".into());
        }
        forget_runtime_signal_handlers();
        // SAFETY: `wide` is a valid wide string that is never freed; both calls happen once, on
        // this thread, before any other use of the C API.
        unsafe {
            set_program_name(wide);
            initialize(1);
        }
        unbuffer_c_stdio();
        // SAFETY: Py_GetVersion returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(get_version()) }
            .to_string_lossy()
            .into_owned();
        Ok(EmbeddedPython {
            before_fork: function!(lib, "PyOS_BeforeFork", unsafe extern "C" fn()),
            after_fork_parent: function!(lib, "PyOS_AfterFork_Parent", unsafe extern "C" fn()),
            after_fork_child: function!(lib, "PyOS_AfterFork_Child", unsafe extern "C" fn()),
            run_simple: function!(
                lib,
                "PyRun_SimpleStringFlags",
                unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int
            ),
            finalize: function!(lib, "Py_FinalizeEx", unsafe extern "C" fn() -> c_int),
            add_module: function!(
                lib,
                "PyImport_AddModule",
                unsafe extern "C" fn(*const c_char) -> *mut c_void
            ),
            module_dict: function!(
                lib,
                "PyModule_GetDict",
                unsafe extern "C" fn(*mut c_void) -> *mut c_void
            ),
            dict_item: function!(
                lib,
                "PyDict_GetItemString",
                unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void
            ),
            eval_code: function!(
                lib,
                "PyEval_EvalCode",
                unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> *mut c_void
            ),
            print_error: function!(lib, "PyErr_Print", unsafe extern "C" fn()),
            decref: function!(lib, "Py_DecRef", unsafe extern "C" fn(*mut c_void)),
            long_value: function!(
                lib,
                "PyLong_AsLong",
                unsafe extern "C" fn(*mut c_void) -> libc::c_long
            ),
            version,
            _not_send: std::marker::PhantomData,
        })
    }

    /// `sys.version` of the loaded library.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs `source` in `__main__`. An uncaught exception is printed and gives `false`;
    /// `SystemExit` ends the process the way the `python3` command ends it.
    pub fn run(&self, source: &CStr) -> bool {
        // SAFETY: the interpreter is initialized and this thread holds its GIL (the only
        // thread); the source is NUL-terminated; NULL flags are allowed.
        unsafe { (self.run_simple)(source.as_ptr(), std::ptr::null_mut()) == 0 }
    }

    /// Evaluates the code object bound to `name` in `__main__`, with `__main__`'s namespace,
    /// exactly as `python3 -c` evaluates its code (same frames, same exception handling:
    /// `SystemExit` ends the process). False when it raised or is missing.
    pub fn run_compiled(&self, name: &CStr) -> bool {
        // SAFETY: initialized interpreter, GIL held by this only thread. AddModule, GetDict and
        // GetItemString return borrowed references (or NULL, checked); EvalCode returns a new
        // reference (released) or NULL with an exception set, which PyErr_Print reports.
        unsafe {
            let main = (self.add_module)(c"__main__".as_ptr());
            if main.is_null() {
                (self.print_error)();
                return false;
            }
            let globals = (self.module_dict)(main);
            let code = (self.dict_item)(globals, name.as_ptr());
            if code.is_null() {
                return false;
            }
            let result = (self.eval_code)(code, globals, globals);
            if result.is_null() {
                (self.print_error)();
                return false;
            }
            (self.decref)(result);
            true
        }
    }

    /// The integer attribute `name` of the `sys` module, if it is set to one.
    pub fn sys_int(&self, name: &CStr) -> Option<i64> {
        // SAFETY: initialized interpreter, GIL held by this only thread. AddModule, GetDict and
        // GetItemString return borrowed references or NULL (checked); PyLong_AsLong takes one
        // and returns -1 with an exception set for a non-integer, which is then left unused.
        unsafe {
            let sys = (self.add_module)(c"sys".as_ptr());
            if sys.is_null() {
                return None;
            }
            let item = (self.dict_item)((self.module_dict)(sys), name.as_ptr());
            if item.is_null() {
                return None;
            }
            Some((self.long_value)(item))
        }
    }

    /// Call before forking a process that will run Python code (or whose descendants will).
    pub fn before_fork(&self) {
        // SAFETY: initialized interpreter, GIL held by this (only) thread.
        unsafe { (self.before_fork)() }
    }

    /// Call in the parent after such a fork.
    pub fn after_fork_parent(&self) {
        // SAFETY: as above, paired with `before_fork`.
        unsafe { (self.after_fork_parent)() }
    }

    /// Call first in the descendant that runs Python code.
    pub fn after_fork_child(&self) {
        // SAFETY: this process descends from one that called `before_fork` and has one thread.
        unsafe { (self.after_fork_child)() }
    }

    /// Finalizes the interpreter (threads joined, atexit handlers run, streams flushed); false
    /// when flushing the standard streams failed.
    pub fn finalize(&self) -> bool {
        // SAFETY: initialized interpreter, GIL held; nothing uses it afterwards.
        unsafe { (self.finalize)() == 0 }
    }
}

unsafe extern "C" {
    static mut stdin: *mut libc::FILE;
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
}

/// Makes the C library's standard streams unbuffered, as `python3 -u` does at its start
/// (`Py_InitializeEx` leaves that to the `python3` program), so that what C code writes
/// through stdio interleaves with Python's output as in a cold run.
fn unbuffer_c_stdio() {
    // SAFETY: glibc's stdin, stdout and stderr are valid FILE pointers for the life of the
    // process; setvbuf before other use of a stream only changes its buffering mode. Read
    // once each, on the zygote's only thread.
    unsafe {
        for stream in [stdin, stdout, stderr] {
            libc::setvbuf(stream, std::ptr::null_mut(), libc::_IONBF, 0);
        }
    }
}

/// Undoes what our own runtime set up at start and what the caller handed on, as an `execve`
/// of a fresh `python3` from a login shell would — the stack-overflow handlers on SIGSEGV and
/// SIGBUS and their alternate stack, SIGPIPE ignored, any disposition or blocked signal the
/// caller left — before the interpreter records the dispositions it starts with, so that its
/// `signal` module and its faults look as in a fresh `python3`.
fn forget_runtime_signal_handlers() {
    super::signals::reset_signals_to_defaults();
    let disable = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: sigaltstack reads the stack_t we own; SS_DISABLE ignores the other fields.
    unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
}
