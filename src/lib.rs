//! The `corral` binary's library: its command line. Integration tests drive the binary
//! itself; the pieces it runs are crates of their own (`corral-server`,
//! `corral-controllers`, `corral-agent`, `corral-client`).

pub mod cli;
