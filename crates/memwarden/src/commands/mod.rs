//! One module per subcommand; each reads, analyses and prints, nothing more.

mod balance;
mod daemon;
mod explain;
mod host;
mod ksm;
mod plan;
mod sample;
mod settings;
mod top;
mod vm;

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Cli, Command};

pub use vm::PartialRead;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Host(a) => host::host(cli.root.as_deref(), cli.lang, &a),
        Command::Procs(a) => host::procs(cli.root.as_deref(), &a),
        Command::Ksm(a) => ksm::ksm(cli.root.as_deref(), &a),
        Command::Explain(a) => explain::explain(cli.root.as_deref(), cli.lang, &a),
        Command::Sample(a) => sample::sample(cli.root.as_deref(), &a),
        Command::Vms(a) => vm::vms(&a),
        Command::Top(a) => top::top(cli.root.as_deref(), &a),
        Command::Dommemstat(a) => vm::dommemstat(&a),
        Command::StatsPeriod(a) => vm::stats_period(&a),
        Command::Setmem(a) => vm::setmem(&a),
        Command::Serve(a) => daemon::serve(&a),
        Command::History(a) => daemon::history(&a),
        Command::Leaks(a) => daemon::leaks(&a),
        Command::Balance(a) => balance::balance(&a),
        Command::Plan(a) => plan::plan(&a),
    }
}

/// Writes `text` to stdout (a closed pipe surfaces as an io::Error that main treats as success).
pub(crate) fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Pretty JSON and a newline on stdout.
pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    print(&s)
}
