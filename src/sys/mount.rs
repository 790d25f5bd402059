//! Raw mount syscalls for building a sandbox's root: mount, bind with attributes
//! (`mount_setattr`), remount, unmount and `pivot_root`. Errors read like
//! `mount(tmpfs on /x) => EPERM` so a failed setup says which step failed.
//! Runs in the init (and, for a persistent sandbox's work directory, the host).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Mount attributes to set on a bind mount and everything below it.
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |err| io::Error::new(err.kind(), format!("{what} => {err}"))
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> io::Result<()> {
    if ret < 0 {
        Err(context(what())(io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

/// Makes every mount in this namespace private, so nothing we do propagates to the host.
pub fn make_all_private() -> io::Result<()> {
    // SAFETY: static NUL-terminated strings; null source/type/data are allowed for this call.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(ret, || "mount(--make-rprivate /)".into())
}

/// Mounts a fresh filesystem of `fstype` (tmpfs, proc) at `target`.
pub fn mount_fs(fstype: &str, target: &Path, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let fs = CString::new(fstype).map_err(|_| io::ErrorKind::InvalidInput)?;
    let tgt = c_path(target)?;
    let opts = CString::new(data).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let ret = unsafe {
        libc::mount(
            fs.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            flags,
            opts.as_ptr().cast(),
        )
    };
    check(ret, || {
        format!("mount({fstype} on {}, {data})", target.display())
    })
}

/// Bind-mounts `source` (recursively) onto `target` and sets `attrs` on the whole tree.
pub fn bind(source: &Path, target: &Path, attrs: u64) -> io::Result<()> {
    let src = c_path(source)?;
    let tgt = c_path(target)?;
    // SAFETY: valid NUL-terminated paths; null type and data are allowed for MS_BIND.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    check(ret, || {
        format!("mount(bind {} on {})", source.display(), target.display())
    })?;
    set_attributes(target, attrs)
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Adds `attrs` to the mount at `target` and every mount below it.
pub fn set_attributes(target: &Path, attrs: u64) -> io::Result<()> {
    let tgt = c_path(target)?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    // SAFETY: `tgt` is a valid path; `attr` is a correctly laid out mount_attr whose size we
    // pass; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            tgt.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret as libc::c_int, || {
        format!("mount_setattr({}, {attrs:#x})", target.display())
    })
}

/// Remounts the mount at `target` with `flags` (e.g. read-only), keeping it otherwise.
pub fn remount(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let tgt = c_path(target)?;
    // SAFETY: valid path; null source, type and data are allowed for MS_REMOUNT.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            tgt.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | flags,
            std::ptr::null(),
        )
    };
    check(ret, || {
        format!("mount(remount {} {flags:#x})", target.display())
    })
}

/// Makes the current directory the root: `pivot_root(".", ".")`, then detaches the old root
/// stacked beneath it.
pub fn pivot_to_cwd() -> io::Result<()> {
    // SAFETY: static NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check(ret as libc::c_int, || "pivot_root(., .)".into())?;
    // SAFETY: static NUL-terminated string.
    let ret = unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) };
    check(ret, || "umount2(old root, MNT_DETACH)".into())
}

/// Detaches the mount at `target` (lazily: it goes once nothing uses it), never through a
/// link (`UMOUNT_NOFOLLOW`: a `target` that is a symlink is not followed). Errors are ignored:
/// used for cleanup, where "not mounted" is fine.
pub fn unmount(target: &Path) {
    if let Ok(tgt) = c_path(target) {
        // SAFETY: a valid NUL-terminated path; umount2 touches no other memory.
        unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
    }
}
