//! `kubectl cafe`: a kubectl plugin (by its file name) to watch and operate
//! CafeDeployment releases. See `kubectl cafe --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A reader that stops early (`| head`) ends the plugin as it ends
    // kubectl: by SIGPIPE, not by a panic on a closed stdout.
    // SAFETY: called first, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match cafe_operator::plugin::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 3 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    ExitCode::from(runtime.block_on(cafe_operator::plugin::run(cli)))
}
