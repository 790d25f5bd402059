//! The sandbox's seccomp policy as the code's process installs it: the allowlist (`policy`,
//! what is allowed and why) compiled by our own compiler (`bpf`), and a second filter that
//! makes `clone3` fail with ENOSYS so that the C library falls back to `clone`, whose flags
//! the first filter can inspect. The architecture is checked first (other ABIs, such as i386
//! through `int 0x80`, kill the process); x32 numbers are not in the allowlist. Built once per
//! helper (or once in the zygote), installed last in the code's process.

mod bpf;
mod policy;
mod profile;

pub(crate) use profile::docker_profile;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

/// The compiled filters, in installation order.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    filters: Vec<BpfProgram>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter: {0}")]
pub(crate) struct PolicyError(String);

impl Policy {
    /// Compiles the policy for this architecture.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn build() -> Result<Policy, PolicyError> {
        let fail = |e: seccompiler::BackendError| PolicyError(e.to_string());
        let clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            bpf::target_arch().map_err(PolicyError)?,
        )
        .map_err(fail)?;
        Ok(Policy {
            filters: vec![
                bpf::compile(&policy::verdicts()),
                BpfProgram::try_from(clone3).map_err(fail)?,
            ],
        })
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn build() -> Result<Policy, PolicyError> {
        Err(PolicyError(format!(
            "the seccomp allowlist is written for x86_64; this is {}",
            std::env::consts::ARCH
        )))
    }

    /// Installs the filters on the calling thread. Needs `no_new_privs` (set before).
    pub(crate) fn install(&self) -> std::io::Result<()> {
        for filter in &self.filters {
            seccompiler::apply_filter(filter)
                .map_err(|e| std::io::Error::other(format!("seccomp: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_compiles_to_the_allowlist_and_the_clone3_filter() {
        let policy = Policy::build().unwrap();
        assert_eq!(policy.filters.len(), 2);
    }
}
