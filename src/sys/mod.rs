//! Every raw syscall of the crate, one small module per concern; each `unsafe` block here says
//! why it is sound (`undocumented_unsafe_blocks` is denied). Outside `sys`, `unsafe` appears
//! only to call the few functions here whose soundness depends on the caller (`unsafe fn`
//! with a `# Safety` section), each call with its own `SAFETY` comment. Runs in every process.

mod access;
pub mod embed;
pub mod fdpass;
pub mod isolation;
mod kill;
pub mod memfd;
pub mod mount;
mod process;
mod remove;
mod signals;

pub use access::may_create_in;
pub use isolation::landlock_abi;
pub use kill::*;
pub use process::*;
pub use remove::remove_tree;
pub use signals::reset_signals_to_defaults;
