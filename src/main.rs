use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The CafeDeployment operator.
#[derive(Parser)]
#[command(name = "cafe-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or in-cluster).
    Run,
    /// Print both CRDs (CafeDeployment, InPlaceSet) as YAML.
    Crd,
}

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
        Command::Run => run(),
    }
}

fn run() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cafe_operator::runtime::preflight().await {
            Ok(_client) => {
                eprintln!(
                    "connected; both CRDs are installed. The controllers are not in this build \
                     yet, so nothing reconciles CafeDeployments or InPlaceSets."
                );
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
