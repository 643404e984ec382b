//! One module per subcommand; each reads, analyses and prints, nothing more.

mod vm;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Host(_) | Command::Explain(_) | Command::Procs(_) | Command::Ksm(_) => {
            anyhow::bail!("not built yet")
        }
        Command::Vms(a) => vm::vms(&a),
        Command::Dommemstat(a) => vm::dommemstat(&a),
        Command::StatsPeriod(a) => vm::stats_period(&a),
        Command::Setmem(a) => vm::setmem(&a),
    }
}
