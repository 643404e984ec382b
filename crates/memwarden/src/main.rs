//! memwarden: where host memory goes, what each VM really uses, and safe overcommit.
//!
//! `main` stays thin: parse arguments, run, print the error chain on one line.

mod cli;
mod commands;
mod render;
mod tui;

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`memwarden procs | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("memwarden: {err:#}");
            // Some VMs could not be read but the rest were shown: a distinct code for scripts.
            if err.downcast_ref::<commands::PartialRead>().is_some() {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}
