use std::process::ExitCode;

use clap::Parser;

// Synth allocates on the signing threads and frees on the writer thread; glibc's malloc
// spent ~10% of synth's CPU on that (arena locks, consolidation), mimalloc a fraction of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match lt::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lt: {}", lt::cli::one_line_error(&e));
            return ExitCode::from(2);
        }
    };
    match lt::cmd::run(cli) {
        Ok(code) => code,
        Err(e) if lt::cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lt: {e:#}");
            ExitCode::from(2)
        }
    }
}
