//! One module per subcommand; each reads, analyses and prints, nothing more.

mod explain;
mod host;
mod vm;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Host(a) => host::host(cli.root.as_deref(), &a),
        Command::Procs(a) => host::procs(cli.root.as_deref(), &a),
        Command::Ksm(a) => host::ksm(cli.root.as_deref(), &a),
        Command::Explain(a) => explain::explain(cli.root.as_deref(), cli.lang, &a),
        Command::Vms(a) => vm::vms(&a),
        Command::Dommemstat(a) => vm::dommemstat(&a),
        Command::StatsPeriod(a) => vm::stats_period(&a),
        Command::Setmem(a) => vm::setmem(&a),
    }
}
