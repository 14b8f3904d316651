//! `jose-debug`: see `jose-debug --help`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use jose_debug::cli::{Cli, Command};
use jose_debug::render::{self, Style};
use jose_debug::{app, EXIT_USAGE, EXIT_VALID};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let style = Style {
        color: render::color_enabled(cli.color),
    };
    let (json, result) = match &cli.command {
        Command::Completions(c) => return shipped(Some(c.shell)),
        Command::Man => return shipped(None),
        Command::Decode(args) => (
            args.output.json,
            app::decode(args).map(|r| {
                let text = if args.output.json {
                    to_json(&r)
                } else {
                    render::decode_text(&r, style)
                };
                (text, r.checks.exit_status)
            }),
        ),
        Command::Derive(args) => (
            args.output.json,
            app::derive(args).map(|r| {
                let text = if args.output.json {
                    to_json(&r)
                } else {
                    render::derive_text(&r, style)
                };
                (text, EXIT_VALID)
            }),
        ),
    };
    let code = match result {
        Ok((text, code)) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a panic or a message.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            code
        }
        Err(e) => {
            if json {
                println!("{}", render::json_error(&e.to_string()));
            }
            eprintln!("jose-debug: {e}");
            EXIT_USAGE
        }
    };
    ExitCode::from(code as u8)
}

/// `completions SHELL` or `man`, from the command line's definition.
fn shipped(shell: Option<jose_binding_settings::shipped::Shell>) -> ExitCode {
    use clap::CommandFactory;
    match jose_binding_settings::shipped::print(Cli::command(), shell) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jose-debug: {e}");
            ExitCode::from(EXIT_USAGE as u8)
        }
    }
}

/// A command line clap refuses: its message (and, for `--json`, a JSON
/// document), exit status 2. `--help` and `--version` exit 0 as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--json") {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("usage error");
        println!(
            "{}",
            render::json_error(first.trim_start_matches("error: "))
        );
    }
    let _ = e.print();
    ExitCode::from(EXIT_USAGE as u8)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_string_pretty(v) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => render::json_error(&format!("cannot serialize the report: {e}")),
    }
}
