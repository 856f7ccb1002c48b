//! (in progress)
/// First argument that makes the `corral` binary run as a task's shim.
pub const SHIM_ARG: &str = "__shim";
/// Entry point of the shim process.
pub fn shim_main(_args: &[std::ffi::OsString]) -> u8 {
    1
}
