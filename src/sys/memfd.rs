//! Sealed in-memory files: copies of an executable (a process exec'd from one has a
//! `/proc/self/exe` that names no host file: the runc CVE-2019-5736 fix) and of bytes handed
//! to another process (the compiled runner). Their contents cannot change (write, grow and
//! shrink seals, then the seal seal).

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A sealed, close-on-exec memfd holding the bytes of `executable`, mode 0500.
pub fn sealed_copy(executable: &Path) -> io::Result<OwnedFd> {
    let mut source = File::open(executable)?;
    let memfd = sealed(c"code-exec", 0o500, |target| {
        io::copy(&mut source, target).map(drop)
    })?;
    // An executable must have no writable fd open (else ETXTBSY): keep a read-only one.
    let read_only = File::open(format!("/proc/self/fd/{}", memfd.as_raw_fd()))?;
    drop(memfd);
    Ok(OwnedFd::from(read_only))
}

/// A sealed, close-on-exec memfd holding `bytes`, readable by every user (mode 0444): for a
/// file another process opens again through `/proc/self/fd`, whatever its uid.
pub fn sealed_bytes(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    sealed(name, 0o444, |target| target.write_all(bytes))
}

/// A close-on-exec memfd named `name`, filled by `fill`, then given `mode` and sealed
/// against writes, growth, shrinking and further seals.
fn sealed(
    name: &CStr,
    mode: libc::mode_t,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; memfd_create returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and nothing else owns it.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    fill(&mut file)?;
    let memfd = OwnedFd::from(file);
    // SAFETY: fchmod on an fd we own.
    if unsafe { libc::fchmod(memfd.as_raw_fd(), mode) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int and touches no memory.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sealed_bytes_read_back_and_refuse_writes() {
        let memfd = sealed_bytes(c"test", b"runner").unwrap();
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"runner");
        let refused = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => f.write_all(b"x").is_err(),
            Err(_) => true,
        };
        assert!(refused, "sealed bytes took a write");
    }

    #[test]
    fn a_sealed_copy_has_the_bytes_and_refuses_writes() {
        let copy = sealed_copy(Path::new("/bin/true")).unwrap();
        let bytes = std::fs::read(format!("/proc/self/fd/{}", copy.as_raw_fd())).unwrap();
        assert_eq!(bytes, std::fs::read("/bin/true").unwrap());
        let mut writable = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        let refused = match &mut writable {
            Ok(f) => f.write_all(b"x").is_err(),
            Err(_) => true,
        };
        assert!(refused, "a sealed copy took a write");
        drop(writable);
        // It runs.
        let status = std::process::Command::new(format!("/proc/self/fd/{}", copy.as_raw_fd()))
            .status()
            .unwrap();
        assert!(status.success());
    }
}
