//! The `mcp-warden` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use mcp_warden::cli::{Cli, Command, run_offline};
use mcp_warden::config::{Config, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve { config, ready_file } = cli.command else {
        return run_offline(cli.command);
    };
    let config = match config.as_deref().map(Config::from_file).transpose() {
        Ok(c) => c.unwrap_or_else(Config::embedded_default),
        Err(e) => {
            eprintln!("mcp-warden: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    if config.path.is_none() {
        tracing::warn!(
            "no --config given: running the embedded demo (public demo API keys of alice and bob are accepted, loopback listeners); not for production"
        );
    }
    let mut builder = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.workers);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mcp_warden::server::serve(config, ready_file.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One log line per policy error, so plain-format lines stay whole.
            if let mcp_warden::server::StartError::Policy(errors) = &e {
                for error in &errors.0 {
                    tracing::error!(error = %error, "invalid policy");
                    eprintln!("mcp-warden: {error}");
                }
            }
            tracing::error!("{e}");
            eprintln!("mcp-warden: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // The file watcher's own chatter is noise at info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{},notify=warn", config.log_level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}
