//! The command line: `serve`, `check` (the pre-flight of [`crate::preflight`]), `keys`,
//! `hash-key`, `new-key`, `completions`, and the operator tools of [`crate::tools`]
//! (`explain`, `test`, `ls`, `client-config`, `pin`).
//!
//! Owns argument parsing and what each command prints; the work is done by the library.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::config::Config;
use crate::keyring::when;

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden",
    version,
    about = "Identity-aware, tool-level access control for MCP servers behind Envoy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ext_authz gRPC server and the OIDC/health HTTP endpoint.
    Serve {
        /// Service config (YAML). Without it, an embedded demo default is used.
        #[arg(long, env = "MCP_WARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Write the bound addresses as JSON here once both listeners are up.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Pre-flight: everything `serve` would refuse at start (errors) and what is legal but
    /// almost surely wrong (warnings), each with file:line:column and field path.
    /// Exit 0 (clean, or warnings only), 1 (errors, or warnings with --strict), 2 (usage).
    Check {
        /// The service config (YAML) to validate, with every policy file it names.
        #[arg(long, env = "MCP_WARDEN_CONFIG")]
        config: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
        /// Envoy configs to cross-check against this config (listeners, limits, routes).
        #[arg(long, num_args = 1.., value_name = "FILE")]
        envoy: Vec<PathBuf>,
    },
    /// Explain the decision for an identity, an app and a request: role, rule and reason;
    /// exit 0 allow, 1 deny, 2 usage or unknown identity/app.
    Explain(crate::tools::explain::ExplainArgs),
    /// Run policy test files (YAML cases with an expected decision); exit 1 on any failure.
    Test(crate::tools::policy_test::TestArgs),
    /// List the apps, roles and users in force, or which tools, prompts or resources of a
    /// saved list answer a user may see and call.
    Ls(crate::tools::ls::LsArgs),
    /// Print an MCP client's configuration for an app behind Envoy (the key stays in an
    /// environment variable).
    ClientConfig(crate::tools::client_config::ClientConfigArgs),
    /// Create or update an app's pin file (`kind: pins`) from captured list answers and print
    /// what changed since the last pin: added, removed, and changed tools with their fields.
    Pin(crate::tools::pin::PinArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Manage signing keys in the key directory: init, list, rotate, retire, secret.
    Keys {
        /// Service config naming the key directory and schedule (default: the embedded one).
        /// Accepted before or after the action.
        #[arg(long, env = "MCP_WARDEN_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Work on this directory instead of the config's (a local, writable copy of a
        /// Kubernetes Secret's keys); the schedule still comes from the config. Accepted before
        /// or after the action.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print `sha256:<hex>` for an API key (read from stdin when not given).
    HashKey {
        /// The API key; read from stdin when not given (keeps it out of shell history).
        key: Option<String>,
    },
    /// Print a fresh random API key and the hash to put in policy.
    NewKey,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create the key directory and a first key that signs at once.
    Init,
    /// Show every key with its state (next, active, retired, expired) and schedule.
    List,
    /// Add a key that starts signing after the propagation delay.
    Rotate {
        /// Add a key even though a next key is still waiting to sign.
        #[arg(long)]
        force: bool,
    },
    /// Retire a key now; it stays published for the retention time.
    Retire {
        /// The key id (`kid`) to retire, as `keys list` shows it.
        kid: String,
    },
    /// Print a Kubernetes Secret holding the key directory (keyring.json and every key it
    /// lists), for `kubectl apply -f -`.
    Secret {
        /// The Secret's name (the Deployment mounts `mcp-warden-keys`).
        #[arg(long)]
        name: String,
        /// The Secret's namespace (omitted: kubectl's current namespace).
        #[arg(long)]
        namespace: Option<String>,
    },
}

/// Runs a non-`serve` command and returns the process exit code.
pub fn run_offline(command: Command) -> ExitCode {
    match command {
        Command::Serve { .. } => ExitCode::FAILURE,
        Command::Check { config, strict, envoy } => crate::preflight::run(&config, &envoy, strict),
        Command::Explain(args) => crate::tools::explain::run(&args),
        Command::Test(args) => crate::tools::policy_test::run(&args),
        Command::Ls(args) => crate::tools::ls::run(&args),
        Command::ClientConfig(args) => crate::tools::client_config::run(&args),
        Command::Pin(args) => crate::tools::pin::run(&args),
        Command::Completions { shell } => completions(shell),
        Command::Keys { config, dir, action } => keys(config.as_deref(), dir, action),
        Command::HashKey { key } => {
            let key = key.unwrap_or_else(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_to_string(&mut s);
                s.trim_end_matches(['\n', '\r']).to_owned()
            });
            if key.is_empty() {
                eprintln!("hash-key: the key is empty (pass it as an argument or on stdin)");
                return ExitCode::FAILURE;
            }
            println!("{}", warden_core::policy::api_key_digest(&key));
            ExitCode::SUCCESS
        }
        Command::NewKey => {
            let mut bytes = [0u8; 32];
            if aws_lc_rs::rand::fill(&mut bytes).is_err() {
                eprintln!("random number generator failed");
                return ExitCode::FAILURE;
            }
            let key = format!("mcpw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
            println!("key:  {key}\nhash: {}", warden_core::policy::api_key_digest(&key));
            ExitCode::SUCCESS
        }
    }
}

fn keys(config: Option<&std::path::Path>, dir: Option<PathBuf>, action: KeysAction) -> ExitCode {
    let mut config = match config.map(Config::from_file).transpose() {
        Ok(c) => c.unwrap_or_else(Config::embedded_default),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(pem) = &config.signing_key {
        eprintln!(
            "signing_key is set ({}): serve signs with that key only and ignores the key directory; remove it to use `keys`",
            pem.display()
        );
        return ExitCode::FAILURE;
    }
    if let Some(d) = dir {
        config.keys.dir = d;
        config.keys.read_only = false;
    }
    let dir = &config.keys;
    let now = std::time::SystemTime::now();
    let t = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let result = match action {
        KeysAction::Init => dir.init(now).map(|kid| {
            println!("created {} with {kid}: signs now", dir.dir.display());
        }),
        KeysAction::List => dir.require_dir().and_then(|()| dir.load(crate::keyring::Seen::Manifest)).map(|ring| {
            println!("{:<44} {:<8} {:<32} {:<32}", "KID", "STATE", "CREATED", "ACTIVE_FROM");
            for (k, state) in ring.states(now) {
                let (created, from) = (when(k.created, t), when(k.active_from, t));
                println!("{:<44} {:<8} {created:<32} {from:<32}", k.key.kid(), state.as_str());
            }
        }),
        KeysAction::Rotate { force } => dir.rotate(now, force).map(|r| {
            if r.immediate {
                println!("added {}: no key could sign, so it signs now", r.kid);
            } else {
                println!("added {}: published now, signs from {}", r.kid, when(r.active_from, t));
            }
        }),
        KeysAction::Retire { kid } => dir.retire(&kid, now).map(|()| {
            println!("retired {kid}: published until {}", when(t + dir.retain.as_secs(), t));
        }),
        KeysAction::Secret { name, namespace } => {
            dir.files().map(|files| print!("{}", secret_manifest(&name, namespace.as_deref(), &files)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A Secret manifest (YAML) whose keys are the files: `data` values base64, names quoted as
/// JSON strings (valid YAML whatever they hold).
fn secret_manifest(name: &str, namespace: Option<&str>, files: &[(String, Vec<u8>)]) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n", q(name));
    if let Some(ns) = namespace {
        out += &format!("  namespace: {}\n", q(ns));
    }
    out += "type: Opaque\ndata:\n";
    for (file, bytes) in files {
        out += &format!("  {}: {}\n", q(file), b64.encode(bytes));
    }
    out
}

/// `mcp-warden completions SHELL`: the completion script for the whole command line.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "mcp-warden", &mut std::io::stdout());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and every argument of the whole command line, with its path.
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        if cmd.get_about().is_none() {
            out.push(format!("{path}: no about"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                out.push(format!("{path} {id}: no help"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_subcommand_and_flag_has_help_text() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "mcp-warden", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
