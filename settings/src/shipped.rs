//! What a package ships besides the binary, made from the same clap
//! definition as `--help`: shell completions (`completions SHELL`, for
//! people who install with cargo too) and the man page (`man`, hidden;
//! scripts/dist.sh writes the packages' pages with it).

use std::io::Write;

use clap::{Args, Command};

/// The shells completions are written for.
pub use clap_complete::Shell;

/// `completions SHELL`.
#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. E.g.
    /// `jwt-server completions bash > /etc/bash_completion.d/jwt-server`.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script of `cmd` for `shell` to `out`.
pub fn completions(mut cmd: Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the roff man page of `cmd`, subcommands listed, to `out`.
pub fn man(cmd: Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// `completions SHELL` or `man` for `cmd`, to stdout; a closed stdout
/// (`| head`) ends quietly.
pub fn print(cmd: Command, what: Option<Shell>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    match what {
        Some(shell) => completions(cmd, shell, &mut buf),
        None => man(cmd, &mut buf)?,
    }
    let mut stdout = std::io::stdout();
    match stdout.write_all(&buf).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gives_a_man_page_and_completions() {
        let cmd = Command::new("demo-tool")
            .about("A demo")
            .arg(clap::Arg::new("flag").long("flag").help("A flag"));
        let mut page = Vec::new();
        man(cmd.clone(), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.contains(".TH demo-tool") && page.contains("flag"),
            "{page}"
        );
        let mut bash = Vec::new();
        completions(cmd, Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(
            bash.contains("complete -F") && bash.contains("--flag"),
            "{bash}"
        );
    }
}
