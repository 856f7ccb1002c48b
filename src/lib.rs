//! The `corral` binary's library: the API server, the HTTP client and the CLI.
//! Integration tests drive these directly as well as through the binary.

pub mod bench;
pub mod cli;
pub mod client;
pub mod server;
