//! `mcp-warden check`: the pre-flight. Runs `serve`'s own start-up steps that change nothing
//! (config, signing keys, policy, the identity provider's settings) and reports what `serve`
//! would refuse as errors, and what is legal but almost surely wrong as warnings: an issuer
//! AgentCore will not accept or will not find, a key directory `serve` would have to create,
//! no key able to sign, and the policy's own warnings. With `--envoy`, Envoy configs are
//! cross-checked against this config (`preflight/envoy.rs`).
//!
//! Owns the report: every finding names file:line:column and field path, all in one list
//! sorted by file and line, each once. Never binds a socket, writes a file or creates a
//! directory.

mod envoy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use crate::config::{AuditOutput, Config, GrpcListen};
use crate::keyring::KeyStart;
use warden_core::located::{Loc, locate};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub at: Loc,
    /// `field: what is wrong`.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {what}: {}", self.at, self.message)
    }
}

/// The findings in `text` form `"{at}: message"`, split back into location and message.
fn finding(severity: Severity, at: Loc, display: &str) -> Finding {
    let prefix = format!("{at}: ");
    let message = display.strip_prefix(&prefix).unwrap_or(display).to_owned();
    Finding { severity, at, message }
}

/// A config file's text, for locating fields in it.
struct ConfigText {
    file: String,
    text: String,
}

impl ConfigText {
    fn at(&self, field: &str) -> Loc {
        locate(&self.text, 0, field).map_or_else(|| Loc::file(&self.file), |a| Loc::at(&self.file, a))
    }
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Sorted by file, line and column; each once.
    pub findings: Vec<Finding>,
    /// `N apps, N users, N roles` when the policy loaded.
    pub summary: Option<String>,
}

/// Every finding for the config at `path` (and the Envoy configs), sorted, each once.
pub fn findings(path: &Path, envoy_files: &[PathBuf]) -> Report {
    let mut out = Vec::new();
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => return Report { findings: vec![finding(Severity::Error, e.loc(), &e.to_string())], summary: None },
    };
    let text = ConfigText { file: path.display().to_string(), text: std::fs::read_to_string(path).unwrap_or_default() };
    check_keys(&config, &text, &mut out);
    check_issuer(&config, &text, &mut out);
    check_paths(&config, &text, &mut out);
    let policy = match crate::policy_files::load(&config.policy) {
        Ok(p) => {
            out.extend(p.warnings().iter().map(|w| finding(Severity::Warning, w.loc(), &w.to_string())));
            Some(p)
        }
        Err(errors) => {
            out.extend(errors.0.iter().map(|e| finding(Severity::Error, e.loc(), &e.to_string())));
            None
        }
    };
    if let (Some(jwt), Some(policy)) = (&config.jwt, &policy) {
        let issuer = config.issuer.clone().unwrap_or_else(|| format!("http://{}", config.http_listen));
        let verifier = crate::server::jwt_verifier(jwt, &issuer, policy).map(drop).map_err(|e| e.to_string());
        let fetcher = crate::identity::idp::jwks::Fetcher::new(jwt).map(drop).map_err(|e| e.to_string());
        if let Err(e) = verifier.and(fetcher) {
            let message = format!("authentication.jwt: {}", e.trim_start_matches("authentication.jwt: "));
            out.push(Finding { severity: Severity::Error, at: text.at("authentication.jwt"), message });
            // Where: each claims_to_roles role the policy lacks, at its own node.
            for (i, m) in jwt.claims_to_roles.iter().enumerate() {
                for (j, role) in
                    m.roles.iter().enumerate().filter(|(_, r)| !policy.role_names().iter().any(|p| **p == ***r))
                {
                    let field = format!("authentication.jwt.claims_to_roles[{i}].roles[{j}]");
                    let message = format!("{field}: role '{role}' is not defined in the policy");
                    out.push(Finding { severity: Severity::Error, at: text.at(&field), message });
                }
            }
        }
    }
    let summary = policy
        .as_ref()
        .map(|p| format!("{} apps, {} users, {} roles", p.apps().len(), p.users().len(), p.role_names().len()));
    for file in envoy_files {
        envoy::check(file, &config, policy.as_ref(), &mut out);
    }
    out.sort_by(|a, b| (&a.at, a.severity, &a.message).cmp(&(&b.at, b.severity, &b.message)));
    out.dedup();
    Report { findings: out, summary }
}

/// `serve`'s key loading, without its writes: a PEM that does not load or a read-only
/// directory with no key is an error; a directory `serve` would create, or keys none of
/// which signs now, is a warning.
fn check_keys(config: &Config, text: &ConfigText, out: &mut Vec<Finding>) {
    let now = SystemTime::now();
    if let Some(pem) = &config.signing_key {
        if let Err(e) = crate::keys::load_pem_file(pem) {
            out.push(Finding {
                severity: Severity::Error,
                at: text.at("signing_key"),
                message: format!("signing_key: {e}"),
            });
        }
        return;
    }
    let written = |k: &str, f: &str| {
        yaml_serde::from_str::<yaml_serde::Value>(&text.text)
            .ok()
            .is_some_and(|v| v.get(k).and_then(|x| x.get(f)).is_some())
    };
    let field = if written("keys", "dir") { "keys.dir" } else { "state_dir" };
    let dir = config.keys.dir.display();
    let (severity, message) = match config.keys.inspect_start(now) {
        Err(e) => (Severity::Error, format!("{field}: {e}")),
        Ok(KeyStart::Create { dir_exists: false }) => (
            Severity::Warning,
            format!(
                "{field}: key directory {dir} does not exist: serve would create it and a new signing key (a misspelt path? `mcp-warden keys init` creates it explicitly)"
            ),
        ),
        Ok(KeyStart::Create { dir_exists: true }) => return,
        Ok(KeyStart::Ring(ring)) => match ring.inactive_reason(now) {
            Some(reason) => (Severity::Warning, format!("{field}: {dir}: {reason}")),
            None => return,
        },
    };
    out.push(Finding { severity, at: text.at(field), message });
}

/// AgentCore fetches `{issuer}/.well-known/openid-configuration` over public HTTPS.
fn check_issuer(config: &Config, text: &ConfigText, out: &mut Vec<Finding>) {
    let warn = |field: &str, message: String| Finding { severity: Severity::Warning, at: text.at(field), message };
    let Some(issuer) = &config.issuer else {
        if !config.http_listen.ip().is_loopback() {
            out.push(warn(
                "listen.http",
                format!("issuer: not set, so tokens name http://{} (derived from listen.http), which AgentCore will not accept: set the public https URL", config.http_listen),
            ));
        }
        return;
    };
    let (scheme, rest) = issuer.split_once("://").unwrap_or(("", issuer));
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if scheme != "https" && !is_loopback_host(host) {
        out.push(warn(
            "issuer",
            format!("issuer: '{issuer}' is not https: AgentCore fetches discovery and JWKS over public HTTPS only (http is for loopback tests)"),
        ));
    }
    if !path.is_empty() {
        out.push(warn(
            "issuer",
            format!("issuer: '{issuer}' has a path: verifiers fetch {issuer}/.well-known/openid-configuration, but mcp-warden serves /.well-known/openid-configuration at its root and the shipped Envoy routes match only that; use an issuer without a path"),
        ));
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Directories `serve` needs at start and does not create: the audit file's and the gRPC
/// Unix socket's.
fn check_paths(config: &Config, text: &ConfigText, out: &mut Vec<Finding>) {
    let mut need_dir = |field: &str, path: &Path, what: &str| {
        if path.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            out.push(Finding {
                severity: Severity::Error,
                at: text.at(field),
                message: format!("{field}: {}: its directory does not exist; serve cannot {what}", path.display()),
            });
        }
    };
    if let AuditOutput::File(p) = &config.audit {
        need_dir("audit.output", p, "open it");
    }
    if let GrpcListen::Unix(p) = &config.grpc_listen {
        need_dir("listen.grpc", p, "bind it");
    }
}

/// Prints the report; exit 0 (clean, or warnings only unless `strict`), 1 otherwise.
pub fn run(path: &Path, envoy_files: &[PathBuf], strict: bool) -> ExitCode {
    let report = findings(path, envoy_files);
    let errors = report.findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = report.findings.len() - errors;
    for f in &report.findings {
        eprintln!("{f}");
    }
    if errors > 0 || (strict && warnings > 0) {
        eprintln!("{errors} error(s), {warnings} warning(s){}", if strict && errors == 0 { " (--strict)" } else { "" });
        return ExitCode::FAILURE;
    }
    match report.summary {
        Some(summary) => println!("ok: {summary}, {warnings} warning(s)"),
        None => println!("ok: {warnings} warning(s)"),
    }
    ExitCode::SUCCESS
}
