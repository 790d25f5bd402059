//! The sandbox's seccomp policy as a Docker (OCI) seccomp profile, so that a container refuses
//! what the native sandbox refuses: the same allowlist by name, `clone` without namespace
//! flags, `socket` of the same families only (netlink for NETLINK_ROUTE alone), `clone3`
//! answering ENOSYS, everything else
//! EPERM, other architectures' calls refused. Docker's default profile lets `ptrace`,
//! `io_uring_*` and `personality` through and every socket family, vsock among them. Built on
//! the host by the docker backend when it creates a container.

use serde_json::{Value, json};

use super::policy::{ALLOWED_NAMES, NAMESPACE_FLAGS, NETLINK_PROTOCOL, SOCKET_FAMILIES};

/// The profile, as the engine's `seccomp=` security option takes it.
pub(crate) fn docker_profile() -> String {
    profile().to_string()
}

fn profile() -> Value {
    let names: Vec<&str> = ALLOWED_NAMES
        .iter()
        .map(|path| path.rsplit("SYS_").next().unwrap_or(path).trim())
        .collect();
    let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    rules.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    for family in SOCKET_FAMILIES {
        rules.push(json!({
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}],
        }));
    }
    rules.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [
            {"index": 0, "value": libc::AF_NETLINK, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": NETLINK_PROTOCOL, "op": "SCMP_CMP_EQ"},
        ],
    }));
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_speaks_the_allowlist_by_name() {
        let p = profile();
        let names: Vec<&str> = p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names.len(), ALLOWED_NAMES.len());
        for name in ["read", "write", "execve", "setuid", "exit_group"] {
            assert!(names.contains(&name), "{name}");
        }
        for refused in [
            "ptrace",
            "io_uring_setup",
            "io_uring_enter",
            "personality",
            "socket",
            "clone",
            "unshare",
            "mount",
            "bpf",
        ] {
            assert!(
                !names.contains(&refused),
                "{refused} must not be allowed outright"
            );
        }
        assert!(
            names.iter().all(|n| n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
            "{names:?}"
        );
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        // (family, protocol) of each socket rule; a rule's conditions all hold together.
        let sockets: Vec<(i64, Option<i64>)> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"][0] == "socket")
            .map(|r| {
                let args = r["args"].as_array().unwrap();
                assert!(args.iter().all(|a| a["op"] == "SCMP_CMP_EQ"), "{r}");
                let at = |index: i64| {
                    args.iter()
                        .find(|a| a["index"] == index)
                        .map(|a| a["value"].as_i64().unwrap())
                };
                (at(0).unwrap(), at(2))
            })
            .collect();
        let netlink = (libc::AF_NETLINK as i64, Some(libc::NETLINK_ROUTE as i64));
        assert_eq!(sockets, [(1, None), (2, None), (10, None), netlink]);
    }
}
