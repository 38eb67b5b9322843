//! The service configuration: raw YAML (every struct rejects unknown fields) → a validated
//! [`Config`] with resolved paths, parsed durations and addresses. Also the embedded default
//! used when `serve` runs with no config at all.
//!
//! Owns no policy: policy paths are handed to [`warden_core::policy::load`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::authn::AuthMethod;
use crate::identity::idp::{Algorithm, ClaimMapping, DEFAULT_ALGORITHMS, JwtConfig, KeySource};
use crate::keyring::KeyDir;
use warden_core::bounds::Bounds;
use warden_core::located::{Loc, locate};
use warden_core::mcp::Limits;
use warden_core::policy::Source;

/// The embedded demo policy (app `demo`, users `alice` and `bob`).
pub const DEMO_POLICY: &str = include_str!("defaults/demo-policy.yaml");

/// A config that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    #[error("{at}: {message}")]
    Parse { at: Loc, message: String },
    /// `at` is the offending node (or the deepest present parent of a missing one).
    #[error("{at}: {field}: {message}")]
    Invalid { at: Loc, field: &'static str, message: String },
}

impl ConfigError {
    /// Where it is (file:line:column when known).
    pub fn loc(&self) -> Loc {
        match self {
            ConfigError::Io { file, .. } => Loc::file(file),
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => at.clone(),
        }
    }
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
    list_filter: RawListFilter,
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
    jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    discovery_url: Option<String>,
    jwks_url: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    client_ids: Vec<String>,
    algorithms: Option<Vec<String>>,
    clock_skew: Option<String>,
    max_lifetime: Option<String>,
    username_claim: Option<String>,
    #[serde(default)]
    traits: BTreeMap<String, String>,
    #[serde(default)]
    claims_to_roles: Vec<RawClaimMapping>,
    jwks_refresh_interval: Option<String>,
    jwks_min_refresh_interval: Option<String>,
    resource_metadata_url: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimMapping {
    claim: String,
    value: String,
    roles: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspection {
    max_body_bytes: Option<usize>,
    max_depth: Option<usize>,
    max_batch: Option<usize>,
    denied_status: Option<u16>,
    max_name_chars: Option<usize>,
    max_uri_bytes: Option<usize>,
    max_recorded_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    output: Option<String>,
    #[serde(default)]
    skip_allowed_methods: Vec<String>,
    envoy_metadata: Option<EnvoyMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListFilter {
    on_unparseable: Option<OnUnparseable>,
    max_event_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
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

/// Which checks carry decision metadata for Envoy (`audit.envoy_metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvoyMetadata {
    /// Every check: Envoy's access log can show the user, app, method and tool of each request.
    #[default]
    All,
    /// Only what the list filter's matcher reads (allowed list calls, AgentCore search calls,
    /// batches and GET streams) and denials: any other allowed check carries none, which saves
    /// Envoy parsing and storing six fields per request. The audit log still has the decision.
    ListFilter,
}

/// What the list filter does with a list response it cannot parse or filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnparseable {
    /// The client gets a JSON-RPC error (-32603) instead of the list (fail closed).
    #[default]
    Error,
    /// The response passes unfiltered.
    Pass,
}

/// Settings of the ext_proc list filter (`list_filter:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFilterSettings {
    pub on_unparseable: OnUnparseable,
    /// The largest SSE event or JSON body held while it is filtered.
    pub max_event_bytes: usize,
}

/// Where the gRPC listener binds: `IP:port`, or `unix:PATH` for a Unix socket shared with an
/// Envoy on the same host (a relative PATH is resolved against the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for GrpcListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcListen::Tcp(a) => write!(f, "{a}"),
            GrpcListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A validated service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: derived from the bound HTTP address at start.
    pub issuer: Option<String>,
    pub grpc_listen: GrpcListen,
    pub http_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub signing_key: Option<PathBuf>,
    pub keys: KeyDir,
    /// `Cache-Control: max-age` of discovery and JWKS.
    pub jwks_max_age: Duration,
    pub token_lifetime: Duration,
    pub policy: Vec<Source>,
    pub auth_order: Vec<AuthMethod>,
    /// The `jwt` method's settings, when configured.
    pub jwt: Option<JwtConfig>,
    pub limits: Limits,
    /// `inspection.max_name_chars`, `max_uri_bytes`, `max_recorded_bytes`.
    pub bounds: Bounds,
    pub denied_status: u16,
    pub audit: AuditOutput,
    /// MCP methods whose *allowed* requests are not audited (e.g. `tools/list`, `ping`).
    pub audit_skip_allowed: Vec<String>,
    pub envoy_metadata: EnvoyMetadata,
    pub list_filter: ListFilterSettings,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Runtime worker threads; 1 runs everything on one thread (no cross-thread wake-ups,
    /// the cheapest per check on small machines where Envoy needs the other cores).
    pub workers: usize,
    /// The file this came from, or `None` for the embedded default.
    pub path: Option<PathBuf>,
}

/// The longest token lifetime accepted: the reference system mints for at most 10 minutes.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// The largest list event the filter may be told to hold (its gRPC messages stay under 64 MiB).
pub const MAX_LIST_EVENT_BYTES: usize = 48 << 20;
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
            .map_err(|e| {
                let (at, message) = warden_core::located::yaml_error(&e);
                ConfigError::Parse { at: at.map_or_else(|| Loc::file(file), |a| Loc::at(file, a)), message }
            })?
            .unwrap_or_default();
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            at: locate(text, 0, field).map_or_else(|| Loc::file(file), |a| Loc::at(file, a)),
            field,
            message,
        };
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() { p.to_owned() } else { base.join(p) }
        };
        let issuer =
            raw.issuer.map(|i| normalize_issuer(&i).map_err(|m| invalid("issuer", m.to_string()))).transpose()?;
        let life = lifetimes(raw.token.lifetime.as_deref(), &raw.keys, &invalid)?;
        let state_dir = resolve(raw.state_dir.as_deref().unwrap_or(".mcp-warden"));
        let keys = KeyDir {
            dir: raw.keys.dir.as_deref().map_or_else(|| state_dir.join("keys"), resolve),
            read_only: raw.keys.read_only,
            propagation: life.propagation,
            retain: life.retain,
        };
        let (limits, bounds, denied_status) = inspection(&raw.inspection, &invalid)?;
        let jwt = raw.authentication.jwt.map(|j| parse_jwt(j, &invalid)).transpose()?;
        let auth_order = auth_order(raw.authentication.order, jwt.is_some(), &invalid)?;
        let list_filter = ListFilterSettings {
            on_unparseable: raw.list_filter.on_unparseable.unwrap_or_default(),
            max_event_bytes: raw.list_filter.max_event_bytes.unwrap_or(8 << 20),
        };
        if !(1024..=MAX_LIST_EVENT_BYTES).contains(&list_filter.max_event_bytes) {
            return Err(invalid(
                "list_filter.max_event_bytes",
                format!("must be between 1024 and {MAX_LIST_EVENT_BYTES}"),
            ));
        }
        let log_level = raw.log.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid("log.level", format!("'{log_level}' is not a level or filter")));
        }
        Ok(Config {
            issuer,
            grpc_listen: grpc_listen(raw.listen.grpc, &resolve, &invalid)?,
            http_listen: socket_addr("listen.http", raw.listen.http, "127.0.0.1:9192", &invalid)?,
            state_dir,
            signing_key: raw.signing_key.as_deref().map(resolve),
            keys,
            jwks_max_age: life.jwks_max_age,
            token_lifetime: life.token,
            policy: raw.policy.iter().map(|p| Source::Path(resolve(p))).collect(),
            auth_order,
            jwt,
            limits,
            bounds,
            denied_status,
            audit: match raw.audit.output.as_deref() {
                None | Some("stdout" | "-") => AuditOutput::Stdout,
                Some(p) => AuditOutput::File(resolve(p)),
            },
            audit_skip_allowed: raw.audit.skip_allowed_methods,
            envoy_metadata: raw.audit.envoy_metadata.unwrap_or_default(),
            list_filter,
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

/// `listen.grpc`: `IP:port` (default 127.0.0.1:9191) or `unix:PATH`.
fn grpc_listen(
    raw: Option<String>,
    resolve: &impl Fn(&str) -> PathBuf,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<GrpcListen, ConfigError> {
    match raw.as_deref().and_then(|g| g.strip_prefix("unix:")) {
        Some("") => Err(invalid("listen.grpc", "'unix:' needs a socket path".into())),
        Some(path) => Ok(GrpcListen::Unix(resolve(path))),
        None => Ok(GrpcListen::Tcp(socket_addr("listen.grpc", raw, "127.0.0.1:9191", invalid)?)),
    }
}

fn socket_addr(
    field: &'static str,
    value: Option<String>,
    default: &str,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_owned());
    v.parse().map_err(|_| invalid(field, format!("'{v}' is not an IP:port address")))
}

/// How long tokens live and how keys rotate (`token.lifetime`, `keys.*`), checked together.
struct Lifetimes {
    token: Duration,
    jwks_max_age: Duration,
    propagation: Duration,
    retain: Duration,
}

/// A duration field, or `default` when it is absent.
fn duration_or(
    field: &'static str,
    value: Option<&str>,
    default: Duration,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Duration, ConfigError> {
    value.map_or(Ok(default), |s| parse_duration(s).map_err(|m| invalid(field, m.to_string())))
}

fn lifetimes(
    token_lifetime: Option<&str>,
    raw: &RawKeys,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Lifetimes, ConfigError> {
    let token = duration_or("token.lifetime", token_lifetime, Duration::from_secs(300), invalid)?;
    if token < Duration::from_secs(30) || token > MAX_LIFETIME {
        return Err(invalid("token.lifetime", "must be between 30s and 10m".into()));
    }
    let minute = Duration::from_secs(60);
    let jwks_max_age = duration_or("keys.jwks_max_age", raw.jwks_max_age.as_deref(), 5 * minute, invalid)?;
    let propagation =
        duration_or("keys.propagation_delay", raw.propagation_delay.as_deref(), jwks_max_age + minute, invalid)?;
    let retain = duration_or("keys.retain", raw.retain.as_deref(), token + jwks_max_age + minute, invalid)?;
    if propagation < jwks_max_age {
        return Err(invalid(
            "keys.propagation_delay",
            "must be at least keys.jwks_max_age, or verifiers may not know the new key".into(),
        ));
    }
    if retain < token + jwks_max_age {
        return Err(invalid("keys.retain", "must be at least token.lifetime + keys.jwks_max_age".into()));
    }
    Ok(Lifetimes { token, jwks_max_age, propagation, retain })
}

/// The `inspection` block: parser limits, record bounds and the status of a denial.
fn inspection(
    raw: &RawInspection,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<(Limits, Bounds, u16), ConfigError> {
    let limits = Limits {
        max_body_bytes: raw.max_body_bytes.unwrap_or(1 << 20),
        max_depth: raw.max_depth.unwrap_or(32),
        max_batch: raw.max_batch.unwrap_or(100),
    };
    if limits.max_body_bytes == 0 {
        return Err(invalid("inspection.max_body_bytes", "must be positive".into()));
    }
    if limits.max_batch == 0 {
        return Err(invalid("inspection.max_batch", "must be positive".into()));
    }
    if !(2..=MAX_DEPTH_LIMIT).contains(&limits.max_depth) {
        return Err(invalid("inspection.max_depth", format!("must be between 2 and {MAX_DEPTH_LIMIT}")));
    }
    let bounds = bounds(raw, invalid)?;
    let denied_status = raw.denied_status.unwrap_or(200);
    if !matches!(denied_status, 200 | 403) {
        return Err(invalid(
            "inspection.denied_status",
            format!("{denied_status}: use 200 (MCP clients read the JSON-RPC error) or 403"),
        ));
    }
    Ok((limits, bounds, denied_status))
}

/// `authentication.order` (default: mtls, api_key, then jwt when configured): each method
/// once, and `jwt` exactly when an `authentication.jwt` block is configured.
fn auth_order(
    order: Option<Vec<AuthMethod>>,
    has_jwt: bool,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Vec<AuthMethod>, ConfigError> {
    let order = order.unwrap_or_else(|| {
        let mut order = vec![AuthMethod::Mtls, AuthMethod::ApiKey];
        if has_jwt {
            order.push(AuthMethod::Jwt);
        }
        order
    });
    if order.is_empty() {
        return Err(invalid("authentication.order", "name at least one method".into()));
    }
    if let Some((i, m)) = order.iter().enumerate().find(|(i, m)| order[..*i].contains(m)) {
        return Err(invalid("authentication.order", format!("'{}' is listed twice (entry {i})", m.name())));
    }
    match (order.contains(&AuthMethod::Jwt), has_jwt) {
        (true, false) => Err(invalid("authentication.order", "'jwt' needs an authentication.jwt block".into())),
        (false, true) => Err(invalid(
            "authentication.order",
            "authentication.jwt is configured but 'jwt' is not in the order".into(),
        )),
        _ => Ok(order),
    }
}

/// Validates the name, URI and record limits of `inspection` (see [`Bounds`]).
fn bounds(raw: &RawInspection, invalid: &impl Fn(&'static str, String) -> ConfigError) -> Result<Bounds, ConfigError> {
    let default = Bounds::default();
    let within = |field: &'static str, v: Option<usize>, default: usize, range: std::ops::RangeInclusive<usize>| {
        let v = v.unwrap_or(default);
        match range.contains(&v) {
            true => Ok(v),
            false => Err(invalid(field, format!("{v}: must be between {} and {}", range.start(), range.end()))),
        }
    };
    Ok(Bounds {
        max_name_chars: within("inspection.max_name_chars", raw.max_name_chars, default.max_name_chars, 1..=4096)?,
        max_uri_bytes: within("inspection.max_uri_bytes", raw.max_uri_bytes, default.max_uri_bytes, 256..=65_536)?,
        max_recorded_bytes: within(
            "inspection.max_recorded_bytes",
            raw.max_recorded_bytes,
            default.max_recorded_bytes,
            64..=65_536,
        )?,
    })
}

/// Validates `authentication.jwt`; every error names its field.
fn parse_jwt(raw: RawJwt, invalid: &impl Fn(&'static str, String) -> ConfigError) -> Result<JwtConfig, ConfigError> {
    let dur =
        |field: &'static str, v: Option<String>, default: Duration| duration_or(field, v.as_deref(), default, invalid);
    let keys = jwt_keys(&raw.issuer, raw.discovery_url, raw.jwks_url, invalid)?;
    if raw.audiences.is_empty() && raw.client_ids.is_empty() {
        return Err(invalid(
            "authentication.jwt.audiences",
            "list at least one accepted audience (or, for tokens without `aud`, client_ids)".into(),
        ));
    }
    for (field, list) in
        [("authentication.jwt.audiences", &raw.audiences), ("authentication.jwt.client_ids", &raw.client_ids)]
    {
        if list.iter().any(String::is_empty) {
            return Err(invalid(field, "no entry may be empty".into()));
        }
    }
    let algorithms = jwt_algorithms(raw.algorithms, invalid)?;
    let clock_skew = dur("authentication.jwt.clock_skew", raw.clock_skew, Duration::from_secs(60))?;
    if clock_skew > Duration::from_secs(300) {
        return Err(invalid("authentication.jwt.clock_skew", "at most 5m".into()));
    }
    let max_lifetime = dur("authentication.jwt.max_lifetime", raw.max_lifetime, Duration::from_secs(24 * 3600))?;
    if max_lifetime < Duration::from_secs(60) {
        return Err(invalid("authentication.jwt.max_lifetime", "at least 1m".into()));
    }
    let username_claim = raw.username_claim.unwrap_or_else(|| "email".into());
    if username_claim.is_empty() {
        return Err(invalid("authentication.jwt.username_claim", "must not be empty (email or sub)".into()));
    }
    let trait_name = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if let Some((t, c)) = raw.traits.iter().find(|(t, c)| !trait_name(t) || c.is_empty()) {
        return Err(invalid(
            "authentication.jwt.traits",
            format!("'{t}: {c}': a trait name is letters, digits, '_' and '-'; the claim must not be empty"),
        ));
    }
    let claims_to_roles = jwt_claims_to_roles(raw.claims_to_roles, invalid)?;
    let refresh_interval =
        dur("authentication.jwt.jwks_refresh_interval", raw.jwks_refresh_interval, Duration::from_secs(300))?;
    let min_refresh_interval =
        dur("authentication.jwt.jwks_min_refresh_interval", raw.jwks_min_refresh_interval, Duration::from_secs(30))?;
    if min_refresh_interval < Duration::from_secs(1) {
        return Err(invalid("authentication.jwt.jwks_min_refresh_interval", "at least 1s".into()));
    }
    if refresh_interval < min_refresh_interval {
        return Err(invalid(
            "authentication.jwt.jwks_refresh_interval",
            "must be at least jwks_min_refresh_interval".into(),
        ));
    }
    if let Some(u) = &raw.resource_metadata_url {
        crate::identity::idp::resource_origin(u)
            .map_err(|e| invalid("authentication.jwt.resource_metadata_url", e.to_string()))?;
    }
    Ok(JwtConfig {
        issuer: raw.issuer,
        keys,
        audiences: raw.audiences,
        client_ids: raw.client_ids,
        algorithms,
        clock_skew,
        max_lifetime,
        username_claim,
        traits: raw.traits.into_iter().collect(),
        claims_to_roles,
        refresh_interval,
        min_refresh_interval,
        resource_metadata_url: raw.resource_metadata_url,
        scopes_supported: raw.scopes_supported,
    })
}

/// Where the identity provider's keys are: `discovery_url` or `jwks_url` (not both), else
/// the issuer's discovery document. The issuer and both URLs must be fetchable.
fn jwt_keys(
    issuer: &str,
    discovery_url: Option<String>,
    jwks_url: Option<String>,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<KeySource, ConfigError> {
    let url = |field: &'static str, u: &str| {
        crate::identity::idp::check_fetch_url(u).map_err(|e| invalid(field, e.to_string()))
    };
    if issuer.is_empty() {
        return Err(invalid("authentication.jwt.issuer", "must not be empty".into()));
    }
    url("authentication.jwt.issuer", issuer)?;
    Ok(match (discovery_url, jwks_url) {
        (Some(_), Some(_)) => {
            return Err(invalid("authentication.jwt", "set discovery_url or jwks_url, not both".into()));
        }
        (Some(d), None) => {
            url("authentication.jwt.discovery_url", &d)?;
            KeySource::Discovery(d)
        }
        (None, Some(j)) => {
            url("authentication.jwt.jwks_url", &j)?;
            KeySource::Jwks(j)
        }
        (None, None) => {
            KeySource::Discovery(format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))
        }
    })
}

/// `algorithms`, each once (default: RS256, PS256, ES256); `none` and HMAC are refused.
fn jwt_algorithms(
    names: Option<Vec<String>>,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = names else { return Ok(DEFAULT_ALGORITHMS.to_vec()) };
    let mut algs = Vec::new();
    for name in &names {
        let alg = crate::identity::idp::parse_algorithm(name)
            .map_err(|e| invalid("authentication.jwt.algorithms", e.to_string()))?;
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        return Err(invalid("authentication.jwt.algorithms", "name at least one algorithm".into()));
    }
    Ok(algs)
}

/// `claims_to_roles`: every entry complete and its value pattern compiling.
fn jwt_claims_to_roles(
    raw: Vec<RawClaimMapping>,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Vec<ClaimMapping>, ConfigError> {
    let mut claims_to_roles = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        if m.claim.is_empty() || m.roles.is_empty() || m.roles.iter().any(String::is_empty) {
            return Err(invalid(
                "authentication.jwt.claims_to_roles",
                format!("entry {i}: needs a claim, a value and at least one role"),
            ));
        }
        claims_to_roles.push(ClaimMapping { claim: m.claim, value: m.value, roles: m.roles });
    }
    crate::identity::idp::RoleMapping::compile(&claims_to_roles)
        .map_err(|e| invalid("authentication.jwt.claims_to_roles", e.to_string()))?;
    Ok(claims_to_roles)
}

/// An `issuer` verifiers could not compare, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error("'{0}' must be an http(s) URL")]
    Scheme(String),
    #[error("'{0}' must be a URL with a host and no query or fragment")]
    Shape(String),
}

/// The issuer exactly as verifiers will compare it: no trailing slash, no default port.
pub fn normalize_issuer(issuer: &str) -> Result<String, IssuerError> {
    let (scheme, rest) = issuer
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "https" | "http"))
        .ok_or_else(|| IssuerError::Scheme(issuer.to_owned()))?;
    if rest.is_empty() || rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(IssuerError::Shape(issuer.to_owned()));
    }
    let rest = rest.trim_end_matches('/');
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    Ok(if path.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") })
}

/// A duration that is not a whole number of seconds, minutes or hours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a duration like 30s, 5m or 1h")]
pub struct DurationError(String);

/// `300`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let bad = || DurationError(s.to_owned());
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
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
        assert_eq!(c.bounds, Bounds { max_name_chars: 128, max_uri_bytes: 8192, max_recorded_bytes: 512 });
        assert_eq!(c.issuer, None);
        crate::policy_files::load(&c.policy).expect("the embedded demo policy is valid");
    }

    #[test]
    fn name_uri_and_record_limits_are_read_from_inspection() {
        let text = "inspection: {max_name_chars: 64, max_uri_bytes: 4096, max_recorded_bytes: 256}\n";
        let c = Config::parse(text, "w.yaml", Path::new(".")).expect("valid");
        assert_eq!(c.bounds, Bounds { max_name_chars: 64, max_uri_bytes: 4096, max_recorded_bytes: 256 });
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
    fn envoy_metadata_defaults_to_all_and_reads_list_filter() {
        assert_eq!(Config::embedded_default().envoy_metadata, EnvoyMetadata::All);
        let c = Config::parse("audit: {envoy_metadata: list_filter}", "x", Path::new(".")).expect("valid");
        assert_eq!(c.envoy_metadata, EnvoyMetadata::ListFilter);
        let e = Config::parse("audit: {envoy_metadata: some}", "x", Path::new(".")).expect_err("unknown value");
        assert!(e.to_string().contains("envoy_metadata"), "{e}");
    }

    #[test]
    fn the_grpc_listener_may_be_a_unix_socket() {
        let at = |text: &str| Config::parse(text, "x", Path::new("/etc/warden")).map(|c| c.grpc_listen);
        assert_eq!(
            at("listen: {grpc: 'unix:/run/w/grpc.sock'}").expect("absolute"),
            GrpcListen::Unix("/run/w/grpc.sock".into())
        );
        assert_eq!(
            at("listen: {grpc: 'unix:run/grpc.sock'}").expect("relative"),
            GrpcListen::Unix("/etc/warden/run/grpc.sock".into())
        );
        assert_eq!(at("listen: {grpc: 'unix:/s'}").expect("display").to_string(), "unix:/s");
        assert!(at("listen: {grpc: 'unix:'}").expect_err("no path").to_string().contains("listen.grpc"));
        assert!(at("listen: {grpc: '/run/w.sock'}").expect_err("no scheme").to_string().contains("not an IP:port"));
    }

    #[test]
    fn issuer_is_normalized_as_verifiers_compare_it() {
        assert_eq!(normalize_issuer("https://a.example.com:443/").as_deref(), Ok("https://a.example.com"));
        assert_eq!(normalize_issuer("https://a.example.com:8443/x/").as_deref(), Ok("https://a.example.com:8443/x"));
        assert!(normalize_issuer("ftp://a").is_err());
    }

    const JWT: &str =
        "authentication:\n  jwt:\n    issuer: https://idp.example.com\n    audiences: [https://mcp.example.com/mcp]\n";

    #[test]
    fn a_jwt_block_gets_the_documented_defaults_and_joins_the_default_order() {
        let c = Config::parse(JWT, "c.yaml", Path::new(".")).expect("valid");
        assert_eq!(c.auth_order, [AuthMethod::Mtls, AuthMethod::ApiKey, AuthMethod::Jwt]);
        let j = c.jwt.expect("jwt");
        assert_eq!(j.keys, KeySource::Discovery("https://idp.example.com/.well-known/openid-configuration".into()));
        assert_eq!(j.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(j.username_claim, "email");
        assert_eq!(j.clock_skew, Duration::from_secs(60));
        assert_eq!(j.max_lifetime, Duration::from_secs(24 * 3600));
        assert_eq!((j.refresh_interval, j.min_refresh_interval), (Duration::from_secs(300), Duration::from_secs(30)));
        assert_eq!(j.resource_metadata_url, None);
    }

    #[test]
    fn a_full_jwt_block_is_read_field_by_field() {
        let text = "authentication:\n  order: [jwt, api_key]\n  jwt:\n    issuer: http://127.0.0.1:5556/\n    jwks_url: http://127.0.0.1:5556/jwks\n    audiences: [a, b]\n    algorithms: [ES256, PS256, ES256]\n    clock_skew: 5s\n    max_lifetime: 2h\n    username_claim: sub\n    traits: {groups: groups, tenant: tid}\n    claims_to_roles:\n    - {claim: groups, value: 'mcp-*', roles: [mcp-user]}\n    jwks_refresh_interval: 1m\n    jwks_min_refresh_interval: 1s\n    resource_metadata_url: https://mcp.example.com/.well-known/oauth-protected-resource\n    scopes_supported: [mcp]\n";
        let c = Config::parse(text, "c.yaml", Path::new(".")).expect("valid");
        assert_eq!(c.auth_order, [AuthMethod::Jwt, AuthMethod::ApiKey]);
        let j = c.jwt.expect("jwt");
        assert_eq!(j.issuer, "http://127.0.0.1:5556/", "the issuer is kept byte for byte");
        assert_eq!(j.keys, KeySource::Jwks("http://127.0.0.1:5556/jwks".into()));
        assert_eq!(j.algorithms, [crate::identity::idp::Algorithm::ES256, crate::identity::idp::Algorithm::PS256]);
        assert_eq!(j.traits, [("groups".to_owned(), "groups".to_owned()), ("tenant".to_owned(), "tid".to_owned())]);
        assert_eq!(j.claims_to_roles[0].roles, ["mcp-user"]);
        assert_eq!(j.scopes_supported, ["mcp"]);
    }

    #[test]
    fn client_ids_may_stand_in_for_audiences() {
        let text = "authentication:\n  jwt:\n    issuer: https://idp.example.com\n    client_ids: [app-1]\n";
        let j = Config::parse(text, "c.yaml", Path::new(".")).expect("valid").jwt.expect("jwt");
        assert!(j.audiences.is_empty());
        assert_eq!(j.client_ids, ["app-1"]);
        let e = Config::parse(&text.replace("[app-1]", "['']"), "c.yaml", Path::new(".")).expect_err("empty");
        assert!(e.to_string().contains("authentication.jwt.client_ids"), "{e}");
    }

    /// The per-provider examples of docs/configuration.md are valid configs.
    #[test]
    fn the_documented_identity_provider_examples_load() {
        let doc = include_str!("../docs/configuration.md");
        let section = doc.split("### Per identity provider").nth(1).expect("section");
        let block = section.split("```yaml\n").nth(1).and_then(|b| b.split("```").next()).expect("block");
        let examples: Vec<&str> = block.split("\n# ").filter(|e| e.contains("jwt:")).collect();
        assert_eq!(examples.len(), 5, "{block}");
        for example in examples {
            let body: String = example.lines().skip(1).map(|l| format!("  {l}\n")).collect();
            let text = format!("authentication:\n{body}");
            Config::parse(&text, "doc", Path::new(".")).unwrap_or_else(|e| panic!("{text}\n{e}"));
        }
    }

    #[test]
    fn bad_jwt_settings_name_their_field() {
        let jwt = |extra: &str| format!("{JWT}    {extra}\n");
        for (text, field) in [
            (jwt("algorithms: [HS256]"), "authentication.jwt.algorithms"),
            (jwt("algorithms: [none]"), "authentication.jwt.algorithms"),
            (jwt("algorithms: [RSA-OAEP]"), "authentication.jwt.algorithms"),
            (jwt("jwks_url: http://idp.example.com/jwks"), "authentication.jwt.jwks_url"),
            (jwt("discovery_url: https://a/d\n    jwks_url: https://a/j"), "authentication.jwt"),
            (jwt("clock_skew: 1h"), "authentication.jwt.clock_skew"),
            (jwt("max_lifetime: 10s"), "authentication.jwt.max_lifetime"),
            (jwt("traits: {'a b': c}"), "authentication.jwt.traits"),
            (jwt("claims_to_roles: [{claim: g, value: '^(x$', roles: [r]}]"), "authentication.jwt.claims_to_roles"),
            (jwt("claims_to_roles: [{claim: g, value: x, roles: []}]"), "authentication.jwt.claims_to_roles"),
            (jwt("jwks_min_refresh_interval: 0s"), "authentication.jwt.jwks_min_refresh_interval"),
            (jwt("jwks_min_refresh_interval: 10m"), "authentication.jwt.jwks_refresh_interval"),
            (jwt("resource_metadata_url: https://a/mcp"), "authentication.jwt.resource_metadata_url"),
            (jwt("audience: x"), "audience"),
            (
                "authentication:\n  jwt:\n    issuer: http://idp.example.com\n    audiences: [a]\n".into(),
                "authentication.jwt.issuer",
            ),
            ("authentication:\n  jwt:\n    issuer: https://idp.example.com\n".into(), "authentication.jwt.audiences"),
            ("authentication:\n  order: [mtls, jwt]\n".into(), "authentication.order"),
            (format!("{JWT}  order: [mtls, api_key]\n"), "authentication.order"),
            ("authentication:\n  order: [mtls, mtls]\n".into(), "authentication.order"),
        ] {
            let e = Config::parse(&text, "c.yaml", Path::new(".")).expect_err(&text).to_string();
            assert!(e.starts_with("c.yaml:") && e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("token: {lifetime: 5d}\n", "token.lifetime"),
            ("token: {lifetime: 2h}\n", "token.lifetime"),
            ("token: {lifetime: 11m}\n", "token.lifetime"),
            ("inspection: {denied_status: 500}\n", "inspection.denied_status"),
            ("listen: {http: nowhere}\n", "listen.http"),
            ("inspection: {max_depth: 1000}\n", "inspection.max_depth"),
            ("inspection: {max_name_chars: 0}\n", "inspection.max_name_chars"),
            ("inspection: {max_uri_bytes: 100}\n", "inspection.max_uri_bytes"),
            ("inspection: {max_recorded_bytes: 1000000}\n", "inspection.max_recorded_bytes"),
            ("inspection: {max_batch: 0}\n", "inspection.max_batch"),
            ("keys: {jwks_max_age: 10m, propagation_delay: 1m}\n", "keys.propagation_delay"),
            ("keys: {retain: 1m}\n", "keys.retain"),
        ] {
            let e = Config::parse(text, "c.yaml", Path::new(".")).expect_err(text).to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    /// Errors point at the offending node, not the document's start.
    #[test]
    fn errors_name_the_line_and_column_of_their_node() {
        for (text, want) in [
            ("# c\ntoken:\n  lifetime: 5d\n", "c.yaml:3:13: token.lifetime: "),
            ("keys:\n  jwks_max_age: 10m\n  propagation_delay: 1m\n", "c.yaml:3:22: keys.propagation_delay: "),
            ("inspection:\n  max_depht: 4\n", "c.yaml:2:3: inspection: unknown field `max_depht`"),
            ("listen: {grpc: '127.0.0.1:1', http: nowhere}\n", "c.yaml:1:37: listen.http: "),
            (
                &format!("{JWT}    claims_to_roles: [{{claim: g, value: '^(x$', roles: [r]}}]\n"),
                "c.yaml:5:22: authentication.jwt.claims_to_roles: ",
            ),
            // A field that is absent: its parent.
            (
                "authentication:\n  jwt: {issuer: 'https://idp.example.com'}\n",
                "c.yaml:2:8: authentication.jwt.audiences: ",
            ),
        ] {
            let e = Config::parse(text, "c.yaml", Path::new(".")).expect_err(text).to_string();
            assert!(e.starts_with(want), "{text}\nwant: {want}\ngot:  {e}");
        }
    }

    #[test]
    fn list_filter_fails_closed_unless_told_to_pass() {
        let c = Config::embedded_default();
        assert_eq!(c.list_filter.on_unparseable, OnUnparseable::Error);
        assert_eq!(c.list_filter.max_event_bytes, 8 << 20);
        let c = Config::parse("list_filter: {on_unparseable: pass, max_event_bytes: 65536}\n", "c", Path::new("."))
            .expect("valid");
        assert_eq!(c.list_filter, ListFilterSettings { on_unparseable: OnUnparseable::Pass, max_event_bytes: 65536 });
        for text in ["list_filter: {on_unparseable: ignore}\n", "list_filter: {max_event_bytes: 10}\n"] {
            let e = Config::parse(text, "c.yaml", Path::new(".")).expect_err(text).to_string();
            assert!(e.contains("list_filter"), "{text}: {e}");
        }
    }
}

/// `docs/configuration.md` documents exactly the fields the config structs accept.
#[cfg(test)]
mod documented_fields {
    use std::collections::{BTreeMap, BTreeSet};

    use super::RawConfig;

    const PROBE: &str = "__probe__";

    /// The fields of the struct at `path` (`x[]` is an element of list `x`), or `None` when
    /// the node there is not a struct: serde is asked with an unknown key, which a struct
    /// with `deny_unknown_fields` refuses by listing what it expects.
    fn fields_at(path: &[String]) -> Option<Vec<String>> {
        let mut text = format!("{{{PROBE}: 1}}");
        for seg in path.iter().rev() {
            text = match seg.strip_suffix("[]") {
                Some(name) => format!("{{{name}: [{text}]}}"),
                None => format!("{{{seg}: {text}}}"),
            };
        }
        let e = yaml_serde::from_str::<RawConfig>(&text).expect_err("the probe key is unknown").to_string();
        let rest = e.split(&format!("unknown field `{PROBE}`")).nth(1)?;
        let rest = rest.split(" at line ").next().unwrap_or(rest);
        Some(rest.split('`').skip(1).step_by(2).map(str::to_owned).collect())
    }

    /// Every field path the structs accept; `true` for a struct (fields below), `false` for a leaf.
    fn struct_paths() -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        let mut todo = vec![Vec::<String>::new()];
        while let Some(path) = todo.pop() {
            for field in fields_at(&path).unwrap_or_default() {
                let mut child = path.clone();
                child.push(field.clone());
                let mut list = path.clone();
                list.push(format!("{field}[]"));
                let name = child.join(".").replace("[]", "");
                if fields_at(&child).is_some() {
                    todo.push(child);
                    out.insert(name, true);
                } else if fields_at(&list).is_some() {
                    todo.push(list);
                    out.insert(name, true);
                } else {
                    out.insert(name, false);
                }
            }
        }
        out
    }

    /// The YAML blocks of the sections that document the service config, with documented
    /// alternatives (`# key: value`) uncommented.
    fn documented_yaml() -> Vec<yaml_serde::Value> {
        let doc = include_str!("../docs/configuration.md");
        let mut out = Vec::new();
        let mut section = "";
        let mut block: Option<String> = None;
        for line in doc.lines() {
            if line.starts_with('#') {
                section = line;
            }
            match (&mut block, line) {
                (None, "```yaml") if section == "## Service config" || section == "### `authentication.jwt`" => {
                    block = Some(String::new());
                }
                (Some(b), "```") => {
                    out.push(yaml_serde::from_str(b).expect("documented YAML parses"));
                    block = None;
                }
                (Some(b), l) => {
                    let trimmed = l.trim_start();
                    let indent = &l[..l.len() - trimmed.len()];
                    let alt = trimmed.strip_prefix("# ").filter(|t| {
                        t.split_once(": ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        })
                    });
                    b.push_str(&alt.map_or_else(|| l.to_owned(), |t| format!("{indent}{t}")));
                    b.push('\n');
                }
                _ => {}
            }
        }
        out
    }

    fn walk(v: &yaml_serde::Value, path: &str, structs: &BTreeMap<String, bool>, out: &mut BTreeSet<String>) {
        let Some(map) = v.as_mapping() else { return };
        for (k, child) in map {
            let Some(k) = k.as_str() else { continue };
            let name = if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
            out.insert(name.clone());
            if structs.get(&name) != Some(&true) {
                continue; // a leaf, or a map of free-form keys (traits)
            }
            match child.as_sequence() {
                Some(items) => items.iter().for_each(|i| walk(i, &name, structs, out)),
                None => walk(child, &name, structs, out),
            }
        }
    }

    #[test]
    fn every_documented_field_exists_and_every_field_is_documented() {
        let structs = struct_paths();
        assert!(structs.contains_key("authentication.jwt.claims_to_roles.claim"), "{structs:?}");
        let mut documented = BTreeSet::new();
        for v in documented_yaml() {
            walk(&v, "", &structs, &mut documented);
        }
        let unknown: Vec<&String> = documented.iter().filter(|p| !structs.contains_key(*p)).collect();
        assert!(unknown.is_empty(), "documented in docs/configuration.md but not a config field: {unknown:?}");
        let missing: Vec<&String> = structs.keys().filter(|p| !documented.contains(*p)).collect();
        assert!(missing.is_empty(), "config fields missing from docs/configuration.md: {missing:?}");
    }
}
