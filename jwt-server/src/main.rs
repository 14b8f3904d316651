//! jwt-server: the reference server for TLS-bound JOSE tokens.
//!
//! Thin on purpose: this file only dispatches. The command line is in
//! cli.rs (each setting declared once), what serving makes of them in
//! config.rs, serving in serve.rs, the keystore's
//! clients in keys.rs, enrolment invites in invite.rs, custody in
//! custody.rs and the first run in init.rs; the binding, the verifier
//! and the serving loop live in the jose-binding library, the echo app
//! too (`jose_binding::echo`).

/// `println!` that ends the process quietly when stdout is gone (`| head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod cli;
mod config;
mod custody;
mod init;
mod invite;
mod keys;
mod serve;

use std::process::ExitCode;

use crate::cli::{Command, Parsed};

fn main() -> ExitCode {
    let result = cli::parse().and_then(|p| {
        let Parsed {
            command,
            global,
            settings,
            route_flags,
        } = p;
        init_logging(global.log_format == "json");
        match command {
            None | Some(Command::Serve) => serve::run_server(&global, &settings, route_flags),
            Some(Command::Keys(k)) => keys::keys(k, &global, &settings),
            Some(Command::Init(a)) => init::init(a, &global),
            Some(Command::Completions(c)) => shipped(Some(c.shell)),
            Some(Command::Man) => shipped(None),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwt-server: {e}");
            ExitCode::from(2)
        }
    }
}

/// `completions SHELL` or `man`, from the command line's definition.
fn shipped(shell: Option<jose_binding_settings::shipped::Shell>) -> Result<(), String> {
    jose_binding_settings::shipped::print(cli::command(), shell).map_err(|e| e.to_string())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
