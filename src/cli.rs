//! The command line: `serve`, `check`, `explain`, `keys`, `hash-key`, `new-key`.
//!
//! Owns argument parsing and what each command prints; the work is done by the library.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::keyring::when;
use crate::mcp::{self, Body, Inspection};
use crate::policy::engine::{check_app, check_name};
use crate::policy::{Decision, Governed, Policy};

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
        #[arg(long, env = "MCP_WARDEN_CONFIG")]
        config: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
        /// Envoy configs to cross-check against this config (listeners, limits, routes).
        #[arg(long, num_args = 1.., value_name = "FILE")]
        envoy: Vec<PathBuf>,
    },
    /// Explain the decision for a user, an app and a tool (or a request body).
    Explain {
        #[arg(long, env = "MCP_WARDEN_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        app: String,
        #[arg(long, conflicts_with = "body", required_unless_present = "body")]
        tool: Option<String>,
        /// A file holding a JSON-RPC request body.
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// Manage signing keys in the key directory: init, list, rotate, retire.
    Keys {
        /// Service config naming the key directory and schedule (default: the embedded one).
        /// Accepted before or after the action.
        #[arg(long, env = "MCP_WARDEN_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print `sha256:<hex>` for an API key (read from stdin when not given).
    HashKey { key: Option<String> },
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
    Retire { kid: String },
}

/// Runs a non-`serve` command and returns the process exit code.
pub fn run_offline(command: Command) -> ExitCode {
    match command {
        Command::Serve { .. } => ExitCode::FAILURE,
        Command::Check { config, strict, envoy } => crate::preflight::run(&config, &envoy, strict),
        Command::Explain { config, user, app, tool, body } => {
            explain(&config, &user, &app, tool.as_deref(), body.as_deref())
        }
        Command::Keys { config, action } => keys(config.as_deref(), action),
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
            println!("{}", hash_key(&key));
            ExitCode::SUCCESS
        }
        Command::NewKey => {
            let mut bytes = [0u8; 32];
            if aws_lc_rs::rand::fill(&mut bytes).is_err() {
                eprintln!("random number generator failed");
                return ExitCode::FAILURE;
            }
            let key = format!("mcpw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
            println!("key:  {key}\nhash: {}", hash_key(&key));
            ExitCode::SUCCESS
        }
    }
}

fn keys(config: Option<&std::path::Path>, action: KeysAction) -> ExitCode {
    let config = match config.map(Config::from_file).transpose() {
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `sha256:<hex>` of an API key, as stored in policy.
pub fn hash_key(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn load(path: &std::path::Path) -> Result<(Config, Policy), String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    let policy = Policy::load(&config.policy).map_err(|e| e.to_string())?;
    if let Some(jwt) = &config.jwt {
        crate::jwt::check_mapped_roles(jwt, &policy)
            .map_err(|e| format!("{}: authentication.jwt: {e}", path.display()))?;
    }
    Ok((config, policy))
}

fn explain(
    config: &std::path::Path,
    user: &str,
    app: &str,
    tool: Option<&str>,
    body: Option<&std::path::Path>,
) -> ExitCode {
    let (config, policy) = match load(config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(u), Some(a)) = (policy.user(user), policy.app(app)) else {
        eprintln!(
            "deny: unknown {}",
            if policy.user(user).is_none() { format!("user '{user}'") } else { format!("app '{app}'") }
        );
        return ExitCode::FAILURE;
    };
    let d = check_app(u, a);
    if !d.allowed {
        print_decision(&format!("app '{app}'"), d);
        return ExitCode::FAILURE;
    }
    let text;
    let headers = crate::headers::Headers::new([("content-type", "application/json")]);
    let names: Vec<Governed<'_>>;
    let parsed;
    match (tool, body) {
        (Some(t), _) => names = vec![Governed::Tool(t)],
        (None, Some(path)) => {
            text = match std::fs::read(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            let req = mcp::HttpRequest { method: "POST", headers: &headers, body: &text };
            parsed = match mcp::inspect(&req, &config.limits) {
                Ok(Inspection::Messages { body, .. }) => body,
                Ok(_) => unreachable!("POST always yields messages"),
                Err(r) => {
                    println!("deny: {} ({})", r.message, r.reason);
                    return ExitCode::FAILURE;
                }
            };
            let msgs = match &parsed {
                Body::Single(m) => std::slice::from_ref(m),
                Body::Batch(v) => v.as_slice(),
            };
            let mut out = Vec::new();
            for m in msgs {
                match mcp::governed(m) {
                    Ok(Some(g)) => out.push(g),
                    Ok(None) => {
                        println!("allow: {} is not governed by tool rules", m.method.as_deref().unwrap_or("a response"))
                    }
                    Err(r) => {
                        println!("deny: {} ({})", r.message, r.reason);
                        return ExitCode::FAILURE;
                    }
                }
            }
            names = out;
        }
        (None, None) => unreachable!("clap requires --tool or --body"),
    }
    let mut all_allowed = true;
    for g in names {
        let d = check_name(u, a, g);
        all_allowed &= d.allowed;
        print_decision(&format!("{} '{}'", g.kind(), g.name()), d);
    }
    if all_allowed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_decision(what: &str, d: Decision<'_>) {
    let verdict = if d.allowed { "allow" } else { "deny" };
    match (d.role, d.rule) {
        (Some(role), Some(rule)) => println!("{verdict}: {what} — role '{role}', rule '{rule}' ({})", d.reason.code()),
        _ => println!("{verdict}: {what} — {}", d.reason.code()),
    }
}
