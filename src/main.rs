fn main() -> std::process::ExitCode {
    corral::cli::main()
}
