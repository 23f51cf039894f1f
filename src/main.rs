//! `cafe-operator`: the command line (`operator::flags`) and the start-up
//! (`operator::start`) live in the library; this only dispatches.

use std::process::ExitCode;

use cafe_operator::operator::flags::{Cli, Command};
use cafe_operator::operator::start;
use clap::Parser;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match cafe_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRDs as YAML: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => start::run(*args),
    }
}
