//! The service configuration: raw YAML (every struct rejects unknown fields) → a validated
//! [`Config`] with resolved paths, parsed durations and addresses. Also the embedded default
//! used when `serve` runs with no config at all.
//!
//! Owns no policy: policy paths are handed to [`crate::policy::load`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::keyring::KeyDir;
use crate::mcp::Limits;
use crate::policy::Source;

/// The embedded demo policy (app `demo`, users `alice` and `bob`).
pub const DEMO_POLICY: &str = include_str!("defaults/demo-policy.yaml");

/// A config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Invalid { file: String, field: &'static str, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    #[serde(default)]
    listen: RawListen,
    state_dir: Option<String>,
    signing_key: Option<String>,
    #[serde(default)]
    token: RawToken,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    policy: Vec<String>,
    #[serde(default)]
    authentication: RawAuthentication,
    #[serde(default)]
    inspection: RawInspection,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    runtime: RawRuntime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    grpc: Option<String>,
    http: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    dir: Option<String>,
    #[serde(default)]
    read_only: bool,
    propagation_delay: Option<String>,
    retain: Option<String>,
    jwks_max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthentication {
    order: Option<Vec<AuthMethod>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspection {
    max_body_bytes: Option<usize>,
    max_depth: Option<usize>,
    denied_status: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    output: Option<String>,
    #[serde(default)]
    skip_allowed_methods: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

/// How a caller may prove who it is, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Mtls,
    ApiKey,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    Stdout,
    File(PathBuf),
}

/// A validated service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: derived from the bound HTTP address at start.
    pub issuer: Option<String>,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub signing_key: Option<PathBuf>,
    pub keys: KeyDir,
    /// `Cache-Control: max-age` of discovery and JWKS.
    pub jwks_max_age: Duration,
    pub token_lifetime: Duration,
    pub policy: Vec<Source>,
    pub auth_order: Vec<AuthMethod>,
    pub limits: Limits,
    pub denied_status: u16,
    pub audit: AuditOutput,
    /// MCP methods whose *allowed* requests are not audited (e.g. `tools/list`, `ping`).
    pub audit_skip_allowed: Vec<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Runtime worker threads; 1 runs everything on one thread (no cross-thread wake-ups,
    /// the cheapest per check on small machines where Envoy needs the other cores).
    pub workers: usize,
    /// The file this came from, or `None` for the embedded default.
    pub path: Option<PathBuf>,
}

/// The longest token lifetime accepted.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// serde_json's own recursion limit bounds what depth can be configured.
const MAX_DEPTH_LIMIT: usize = 128;

impl Config {
    /// Reads and validates a config file; relative paths resolve against its directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { file: path.display().to_string(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse(&text, &path.display().to_string(), base)?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// The embedded default: loopback listeners, a generated key, the demo policy.
    pub fn embedded_default() -> Config {
        let mut config = Self::parse("{}", "(embedded default)", Path::new("."))
            .unwrap_or_else(|_| unreachable!("an empty config is valid"));
        config.policy = vec![Source::inline("(embedded demo policy)", DEMO_POLICY)];
        config
    }

    /// Parses config text; `file` names it in errors, `base` resolves relative paths.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = yaml_serde::from_str::<Option<RawConfig>>(text)
            .map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string() })?
            .unwrap_or_default();
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { file: file.to_owned(), field, message };
        let addr = |field: &'static str, v: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_owned());
            v.parse().map_err(|_| invalid(field, format!("'{v}' is not an IP:port address")))
        };
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() { p.to_owned() } else { base.join(p) }
        };
        let issuer = raw.issuer.map(|i| normalize_issuer(&i).map_err(|m| invalid("issuer", m))).transpose()?;
        let token_lifetime = match raw.token.lifetime {
            None => Duration::from_secs(300),
            Some(s) => parse_duration(&s).map_err(|m| invalid("token.lifetime", m))?,
        };
        if token_lifetime < Duration::from_secs(30) || token_lifetime > MAX_LIFETIME {
            return Err(invalid("token.lifetime", "must be between 30s and 1h".into()));
        }
        let dur = |field: &'static str, v: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            v.map_or(Ok(default), |s| parse_duration(&s).map_err(|m| invalid(field, m)))
        };
        let jwks_max_age = dur("keys.jwks_max_age", raw.keys.jwks_max_age, Duration::from_secs(300))?;
        let propagation =
            dur("keys.propagation_delay", raw.keys.propagation_delay, jwks_max_age + Duration::from_secs(60))?;
        let retain = dur("keys.retain", raw.keys.retain, token_lifetime + jwks_max_age + Duration::from_secs(60))?;
        if propagation < jwks_max_age {
            return Err(invalid(
                "keys.propagation_delay",
                "must be at least keys.jwks_max_age, or verifiers may not know the new key".into(),
            ));
        }
        if retain < token_lifetime + jwks_max_age {
            return Err(invalid("keys.retain", "must be at least token.lifetime + keys.jwks_max_age".into()));
        }
        let state_dir = resolve(raw.state_dir.as_deref().unwrap_or(".mcp-warden"));
        let keys = KeyDir {
            dir: raw.keys.dir.as_deref().map_or_else(|| state_dir.join("keys"), resolve),
            read_only: raw.keys.read_only,
            propagation,
            retain,
        };
        let limits = Limits {
            max_body_bytes: raw.inspection.max_body_bytes.unwrap_or(1 << 20),
            max_depth: raw.inspection.max_depth.unwrap_or(32),
        };
        if limits.max_body_bytes == 0 {
            return Err(invalid("inspection.max_body_bytes", "must be positive".into()));
        }
        if !(2..=MAX_DEPTH_LIMIT).contains(&limits.max_depth) {
            return Err(invalid("inspection.max_depth", format!("must be between 2 and {MAX_DEPTH_LIMIT}")));
        }
        let denied_status = raw.inspection.denied_status.unwrap_or(200);
        if !matches!(denied_status, 200 | 403) {
            return Err(invalid(
                "inspection.denied_status",
                format!("{denied_status}: use 200 (MCP clients read the JSON-RPC error) or 403"),
            ));
        }
        let auth_order = raw.authentication.order.unwrap_or_else(|| vec![AuthMethod::Mtls, AuthMethod::ApiKey]);
        if auth_order.is_empty() {
            return Err(invalid("authentication.order", "name at least one method".into()));
        }
        let log_level = raw.log.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid("log.level", format!("'{log_level}' is not a level or filter")));
        }
        Ok(Config {
            issuer,
            grpc_listen: addr("listen.grpc", raw.listen.grpc, "127.0.0.1:9191")?,
            http_listen: addr("listen.http", raw.listen.http, "127.0.0.1:9192")?,
            state_dir,
            signing_key: raw.signing_key.as_deref().map(resolve),
            keys,
            jwks_max_age,
            token_lifetime,
            policy: raw.policy.iter().map(|p| Source::Path(resolve(p))).collect(),
            auth_order,
            limits,
            denied_status,
            audit: match raw.audit.output.as_deref() {
                None | Some("stdout" | "-") => AuditOutput::Stdout,
                Some(p) => AuditOutput::File(resolve(p)),
            },
            audit_skip_allowed: raw.audit.skip_allowed_methods,
            log_level,
            log_format: raw.log.format.unwrap_or_default(),
            workers: match raw.runtime.workers {
                None => 1,
                Some(0) => return Err(invalid("runtime.workers", "must be at least 1".into())),
                Some(n) => n,
            },
            path: None,
        })
    }
}

/// The issuer exactly as verifiers will compare it: no trailing slash, no default port.
pub fn normalize_issuer(issuer: &str) -> Result<String, String> {
    let (scheme, rest) = issuer
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "https" | "http"))
        .ok_or_else(|| format!("'{issuer}' must be an http(s) URL"))?;
    if rest.is_empty() || rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(format!("'{issuer}' must be a URL with a host and no query or fragment"));
    }
    let rest = rest.trim_end_matches('/');
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    Ok(if path.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") })
}

/// `300`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("'{s}' is not a duration like 30s, 5m or 1h")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gets_the_documented_defaults() {
        let c = Config::embedded_default();
        assert_eq!(c.grpc_listen.to_string(), "127.0.0.1:9191");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9192");
        assert_eq!(c.token_lifetime, Duration::from_secs(300));
        assert_eq!(c.denied_status, 200);
        assert_eq!(c.issuer, None);
        crate::policy::Policy::load(&c.policy).expect("the embedded demo policy is valid");
    }

    #[test]
    fn unknown_field_is_an_error_naming_file_and_field() {
        let e = Config::parse("listen: {grcp: '127.0.0.1:1'}\n", "w.yaml", Path::new(".")).expect_err("typo");
        let e = e.to_string();
        assert!(e.starts_with("w.yaml:") && e.contains("grcp"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = Config::parse("policy: [p/]\nstate_dir: s\n", "x", Path::new("/etc/warden")).expect("valid");
        assert_eq!(c.state_dir, Path::new("/etc/warden/s"));
        assert!(matches!(&c.policy[0], Source::Path(p) if p == Path::new("/etc/warden/p/")));
    }

    #[test]
    fn issuer_is_normalized_as_verifiers_compare_it() {
        assert_eq!(normalize_issuer("https://a.example.com:443/").as_deref(), Ok("https://a.example.com"));
        assert_eq!(normalize_issuer("https://a.example.com:8443/x/").as_deref(), Ok("https://a.example.com:8443/x"));
        assert!(normalize_issuer("ftp://a").is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("token: {lifetime: 5d}\n", "token.lifetime"),
            ("token: {lifetime: 2h}\n", "token.lifetime"),
            ("inspection: {denied_status: 500}\n", "inspection.denied_status"),
            ("listen: {http: nowhere}\n", "listen.http"),
            ("inspection: {max_depth: 1000}\n", "inspection.max_depth"),
            ("keys: {jwks_max_age: 10m, propagation_delay: 1m}\n", "keys.propagation_delay"),
            ("keys: {retain: 1m}\n", "keys.retain"),
        ] {
            let e = Config::parse(text, "c.yaml", Path::new(".")).expect_err(text).to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
