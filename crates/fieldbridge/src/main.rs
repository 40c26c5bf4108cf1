//! The `fieldbridge` command: loads `gateway.yaml`, starts one adapter per
//! connection, the normalization engine and the XMPP component, and stops
//! them in order on SIGINT/SIGTERM.
//!
//! Exit codes: 0 success; 1 the gateway failed at run time (the log says
//! why); 2 bad command-line usage; 3 the configuration is invalid (every
//! problem is printed with file:line:column and key path).

mod logging;
mod modbus_cli;
mod runtime;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 3;
/// Exit code for a failure at run time.
const EXIT_RUNTIME: u8 = 1;
/// Exit code for bad command-line usage (as clap exits).
const EXIT_USAGE: u8 = 2;

/// fieldbridge: field devices (Modbus, MQTT, serial lines, simulated) on XMPP.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM.
    Run {
        /// The gateway configuration.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Log format: `human` for people, `json` for log collectors.
        #[arg(long, value_enum, default_value_t = logging::Format::Human)]
        log_format: logging::Format,
        /// More detail in logs (-v debug, -vv trace); RUST_LOG overrides.
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Check a configuration and print what the gateway understood of it.
    Check {
        /// The gateway configuration.
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Print the write audit: every write asked for over XMPP (chat, ad-hoc,
    /// XEP-0325), done or refused, oldest first. Safe while the gateway runs.
    Audit {
        /// The gateway configuration (for its state directory and time zone).
        #[arg(short, long, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Only entries this recent (`1h`, `30m`, `2d`) or since this time
        /// (`2026-12-01T10:00:00+01:00`).
        #[arg(long)]
        since: Option<String>,
        /// The entries as JSON lines (one object per line) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of gateway.yaml (for editors and other tools).
    Schema,
    /// Modbus helpers.
    Modbus {
        #[command(subcommand)]
        command: ModbusCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModbusCommand {
    /// Read a range of a device and print each register decoded as u16,
    /// i16, text, bits, and the 32/64-bit values starting at it in each
    /// word order, to find the map of an unknown device.
    Scan(modbus_cli::ScanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Modbus {
            command: ModbusCommand::Scan(args),
        } => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            match rt.block_on(modbus_cli::scan(args)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("modbus scan: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Schema => {
            let schema = fieldbridge::config::schema::gateway_schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot print the schema: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Audit {
            config,
            since,
            json,
        } => audit(&config, since.as_deref(), json),
        Command::Check { config } => {
            match fieldbridge::config::load(&config, fieldbridge::config::Purpose::Check) {
                Ok(cfg) => {
                    print!("{}", fieldbridge::check::render_tree(&cfg));
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Run {
            config,
            log_format,
            verbose,
        } => {
            logging::init(log_format, verbose);
            let cfg = match fieldbridge::config::load(&config, fieldbridge::config::Purpose::Run) {
                Ok(cfg) => cfg,
                Err(errors) => {
                    for e in errors.iter() {
                        tracing::error!("{e}");
                    }
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("fieldbridge")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            match rt.block_on(runtime::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "gateway failed");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

/// `fieldbridge audit`: the entries on stdout, lines that are not entries
/// (with file and line number) on stderr, skipped.
fn audit(config: &std::path::Path, since: Option<&str>, json: bool) -> ExitCode {
    use fieldbridge_core::audit;
    let cfg = match fieldbridge::config::load(config, fieldbridge::config::Purpose::Check) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let since = match since.map(|s| audit::parse_since(s, std::time::SystemTime::now())) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(e)) => {
            eprintln!("--since: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let found = match audit::read(&cfg.gateway.state_dir, since) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    for bad in &found.bad {
        eprintln!("{bad}");
    }
    let mut out = String::new();
    for entry in &found.entries {
        if json {
            out.push_str(&entry.to_line());
        } else {
            out.push_str(&fieldbridge::audit::render(
                entry,
                &cfg.directory,
                &cfg.gateway.time_zone,
            ));
        }
        out.push('\n');
    }
    print!("{out}");
    ExitCode::SUCCESS
}
