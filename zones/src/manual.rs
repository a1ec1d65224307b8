//! The binaries' man pages and shell completions, generated from the same clap definitions
//! as their `--help` (`packaging/docs.sh` runs each binary's hidden `generate` command).

use std::path::Path;

/// Writes a man page (section 1) per command and subcommand of `command` into `man`, and its
/// bash, zsh and fish completions for the program `name` into `completions`.
pub fn generate(
    command: clap::Command,
    name: &str,
    man: &Path,
    completions: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(man)?;
    std::fs::create_dir_all(completions)?;
    clap_mangen::generate_to(command.clone(), man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command.clone(), name, completions)?;
    }
    Ok(())
}
