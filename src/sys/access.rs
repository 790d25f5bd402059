//! Permission checks without side effects (`faccessat`): whether this process could create
//! entries in a directory, decided by the kernel's own rules (modes, ownership across user
//! namespaces, capabilities, read-only mounts) without making anything.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether this process, with its effective ids, may create and remove entries in `dir`
/// (write and search permission on a writable mount).
pub fn may_create_in(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: faccessat reads the NUL-terminated path we own and writes nothing.
    let ret = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    ret == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_is_and_a_missing_or_read_only_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(may_create_in(dir.path()));
        assert!(!may_create_in(&dir.path().join("missing")));
        // /proc/self is never writable for new entries, whoever asks.
        assert!(!may_create_in(Path::new("/proc/self")));
    }
}
