//! Every raw syscall of the crate, one small module per concern. Nothing outside `sys` writes
//! `unsafe`; each block here says why it is sound (`undocumented_unsafe_blocks` is denied).

pub mod embed;
pub mod fdpass;
pub mod isolation;
mod kill;
pub mod mount;
mod process;

pub use isolation::landlock_abi;
pub use kill::*;
pub use process::*;
