//! The seccomp compiler: turns the policy's per-number verdicts into a classic-BPF program
//! of our own shape — the architecture checked first, then a balanced binary search over
//! merged ranges of syscall numbers — checked against seccompiler's compilation of the same
//! rules by a small cBPF interpreter (the tests). Runs where the policy is built.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, sock_filter};
#[cfg(test)]
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

#[cfg(test)]
use super::policy::{ALLOWED, verdicts};
use super::policy::{NAMESPACE_FLAGS, NETLINK_PROTOCOL, SOCKET_FAMILIES, Verdict};

#[cfg(target_arch = "x86_64")]
pub(super) fn target_arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("{e:?}"))
}

// Classic BPF opcodes and the `seccomp_data` offsets the filter reads (x86_64, little-endian:
// the low half of argument 0 is at 16).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0_LOW: u32 = 16;
const DATA_ARG2_LOW: u32 = 32;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_DENY: u32 = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);

fn op(code: u16, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The allowlist as a balanced binary search over the syscall numbers, merged into ranges of
/// equal verdict: about 200 instructions where a linear chain (seccompiler's) takes 1,400.
/// The kernel checks and compiles the filter at every sandbox's start, and runs it at every
/// system call, so its size is paid per run. `tests::the_compact_allowlist_decides_as_the_reference`
/// checks it against seccompiler's compilation of the same rules on every number and argument
/// class.
#[cfg(target_arch = "x86_64")]
pub(super) fn compile(verdicts: &BTreeMap<u32, Verdict>) -> BpfProgram {
    // Ranges [start, next start) covering every u32, each with one verdict.
    let mut ranges: Vec<(u32, Verdict)> = vec![(0, Verdict::Deny)];
    let mut push = |start: u32, verdict: Verdict| {
        if let Some(last) = ranges.last_mut() {
            if last.0 == start {
                last.1 = verdict;
                return;
            }
            if last.1 == verdict {
                return;
            }
        }
        ranges.push((start, verdict));
    };
    for (&nr, &verdict) in verdicts {
        push(nr, verdict);
        if let Some(next) = nr.checked_add(1) {
            push(next, Verdict::Deny);
        }
    }
    // Merging may leave equal neighbours where a range was overwritten: fold them.
    ranges.dedup_by(|later, earlier| later.1 == earlier.1);
    let mut program = vec![
        op(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        op(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        op(LD_W_ABS, DATA_NR),
    ];
    program.extend(search(&ranges));
    program
}

/// The decision tree over `ranges` (sorted starts), the syscall number in the accumulator.
fn search(ranges: &[(u32, Verdict)]) -> Vec<sock_filter> {
    if let [(_, verdict)] = ranges {
        return leaf(*verdict);
    }
    let mid = ranges.len() / 2;
    let (below, above) = (search(&ranges[..mid]), search(&ranges[mid..]));
    let pivot = ranges[mid].0;
    let mut out = Vec::with_capacity(below.len() + above.len() + 2);
    match u8::try_from(below.len()) {
        Ok(skip) => out.push(jump(JMP_JGE_K, pivot, skip, 0)),
        Err(_) => {
            // Too far for an 8-bit offset: through an unconditional 32-bit jump.
            out.push(jump(JMP_JGE_K, pivot, 0, 1));
            out.push(op(JMP_JA, below.len() as u32));
        }
    }
    out.extend(below);
    out.extend(above);
    out
}

fn leaf(verdict: Verdict) -> Vec<sock_filter> {
    match verdict {
        Verdict::Allow => vec![op(RET_K, RET_ALLOW)],
        Verdict::Deny => vec![op(RET_K, RET_DENY)],
        // Every namespace flag lies in the low half of the flags argument.
        Verdict::Clone => vec![
            op(LD_W_ABS, DATA_ARG0_LOW),
            jump(JMP_JSET_K, NAMESPACE_FLAGS as u32, 1, 0),
            op(RET_K, RET_ALLOW),
            op(RET_K, RET_DENY),
        ],
        Verdict::Socket => {
            let [a, b, c] = SOCKET_FAMILIES.map(|f| f as u32);
            vec![
                op(LD_W_ABS, DATA_ARG0_LOW),
                jump(JMP_JEQ_K, a, 7, 0),
                jump(JMP_JEQ_K, b, 6, 0),
                jump(JMP_JEQ_K, c, 5, 0),
                jump(JMP_JEQ_K, libc::AF_NETLINK as u32, 1, 0),
                op(RET_K, RET_DENY),
                // Netlink: only the one protocol (the third argument).
                op(LD_W_ABS, DATA_ARG2_LOW),
                jump(JMP_JEQ_K, NETLINK_PROTOCOL as u32, 1, 0),
                op(RET_K, RET_DENY),
                op(RET_K, RET_ALLOW),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same rules compiled by seccompiler (a linear chain): the reference.
    fn reference_allowlist() -> BpfProgram {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
        let no_namespaces = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
            0,
        )
        .unwrap();
        rules.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![no_namespaces]).unwrap()],
        );
        let families = SOCKET_FAMILIES
            .iter()
            .map(|&family| {
                let cond = SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    family as u64,
                )
                .unwrap();
                SeccompRule::new(vec![cond]).unwrap()
            })
            .collect();
        let dword_eq = |index, value: i32| {
            SeccompCondition::new(
                index,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                value as u64,
            )
            .unwrap()
        };
        let mut families: Vec<SeccompRule> = families;
        families.push(
            SeccompRule::new(vec![
                dword_eq(0, libc::AF_NETLINK),
                dword_eq(2, NETLINK_PROTOCOL),
            ])
            .unwrap(),
        );
        rules.insert(libc::SYS_socket, families);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            target_arch().unwrap(),
        )
        .unwrap();
        BpfProgram::try_from(filter).unwrap()
    }

    /// A classic-BPF interpreter for what seccomp filters use: loads from `seccomp_data`
    /// (arch, nr, arguments), conditional and unconditional jumps, AND, returns.
    fn evaluate(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..100_000 {
            let ins = &program[pc];
            let (class, code) = (ins.code & 0x07, ins.code);
            pc += 1;
            match class {
                0x00 => {
                    assert_eq!(code, LD_W_ABS, "unexpected load {code:#x}");
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x04 => {
                    assert_eq!(code, 0x54, "unexpected alu {code:#x}"); // AND K
                    acc &= ins.k;
                }
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x00 => {
                            pc += ins.k as usize;
                            continue;
                        }
                        0x10 => acc == ins.k,
                        0x20 => acc > ins.k,
                        0x30 => acc >= ins.k,
                        0x40 => acc & ins.k != 0,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                0x06 => return ins.k,
                other => panic!("unexpected class {other:#x}"),
            }
        }
        panic!("the program did not return");
    }

    #[test]
    fn the_compact_allowlist_decides_as_the_reference() {
        let compact = compile(&verdicts());
        let reference = reference_allowlist();
        assert!(
            compact.len() < 400 && reference.len() > 3 * compact.len(),
            "compact {} vs reference {} instructions",
            compact.len(),
            reference.len()
        );
        let ns = NAMESPACE_FLAGS;
        let arg0s = [
            0,
            libc::SIGCHLD as u64,
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64,
            libc::CLONE_NEWUSER as u64,
            libc::CLONE_NEWNET as u64 | libc::SIGCHLD as u64,
            libc::CLONE_NEWCGROUP as u64,
            ns,
            1 << 40,
            (1 << 40) | libc::CLONE_NEWNS as u64,
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::AF_INET6 as u64,
            libc::AF_NETLINK as u64,
            libc::AF_PACKET as u64,
            (1 << 32) | libc::AF_UNIX as u64,
            (1 << 32) | libc::AF_NETLINK as u64,
            u64::MAX,
        ];
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend((0..600).map(|n| 0x4000_0000 | n));
        numbers.extend([0x3fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX]);
        // The third argument matters to socket(AF_NETLINK, _, protocol) only.
        let arg2s = [
            libc::NETLINK_ROUTE as u64,
            libc::NETLINK_XFRM as u64,
            libc::NETLINK_NETFILTER as u64,
            libc::NETLINK_KOBJECT_UEVENT as u64,
            (1 << 32) | libc::NETLINK_ROUTE as u64,
            u64::MAX,
        ];
        let mut checked = 0;
        for arch in [AUDIT_ARCH, 0x4000_0003, 0xc000_00b7] {
            for &nr in &numbers {
                for &arg0 in &arg0s {
                    let arg2s: &[u64] = if nr == libc::SYS_socket as u32 {
                        &arg2s
                    } else {
                        &arg2s[..1]
                    };
                    for &arg2 in arg2s {
                        let args = [arg0, 0, arg2, 0, 0, 0];
                        assert_eq!(
                            evaluate(&compact, arch, nr, args),
                            evaluate(&reference, arch, nr, args),
                            "arch {arch:#x} nr {nr} arg0 {arg0:#x} arg2 {arg2:#x}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 3 * (numbers.len() + arg2s.len() - 1) * arg0s.len());
        // And the decisions themselves, for a few known calls.
        let allow =
            |nr: i64, arg0: u64| evaluate(&compact, AUDIT_ARCH, nr as u32, [arg0, 0, 0, 0, 0, 0]);
        assert_eq!(allow(libc::SYS_read, 0), RET_ALLOW);
        assert_eq!(allow(libc::SYS_mount, 0), RET_DENY);
        assert_eq!(allow(libc::SYS_clone, libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(allow(libc::SYS_clone, libc::CLONE_NEWUSER as u64), RET_DENY);
        assert_eq!(allow(libc::SYS_socket, libc::AF_INET as u64), RET_ALLOW);
        let socket = |family: i32, protocol: i32| {
            let args = [
                family as u64,
                libc::SOCK_RAW as u64,
                protocol as u64,
                0,
                0,
                0,
            ];
            evaluate(&compact, AUDIT_ARCH, libc::SYS_socket as u32, args)
        };
        assert_eq!(socket(libc::AF_NETLINK, libc::NETLINK_ROUTE), RET_ALLOW);
        for refused in [
            libc::NETLINK_XFRM,
            libc::NETLINK_NETFILTER,
            libc::NETLINK_KOBJECT_UEVENT,
            libc::NETLINK_AUDIT,
            libc::NETLINK_SOCK_DIAG,
        ] {
            assert_eq!(socket(libc::AF_NETLINK, refused), RET_DENY, "{refused}");
        }
        assert_eq!(socket(libc::AF_PACKET, 0), RET_DENY);
        assert_eq!(
            evaluate(&compact, 0x4000_0003, libc::SYS_read as u32, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }
}
