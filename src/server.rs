//! Process wiring for `serve`: bind both listeners, load key and policy, start the gRPC
//! server (ext_authz, the ext_proc list filter, health, reflection) and the HTTP endpoint,
//! write the ready file, and shut down cleanly on SIGTERM / Ctrl-C.
//!
//! Owns no decision logic; everything here is start-up and lifetime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessorServer;
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::authz::SERVICE_NAME;
use crate::config::Config;
use crate::extproc::ListFilterService;
use crate::identity::idp::{JwtConfig, JwtConfigError, UnknownRoles, Verifier, jwks};
use crate::keyring::{KeyRing, KeyStart};
use crate::keys;
use crate::state::{Settings, Warden};
use crate::token::TokenSettings;
use warden_core::policy::Policy;

/// What an ext_proc message may hold beyond `max_event_bytes`. A buffered JSON list comes as
/// one message; a streamed chunk is as large as Envoy makes it, which is more than its buffer
/// limit when upstream bytes arrive faster than the filter answers (2 MiB seen with the
/// default 1 MiB). A message refused here resets the response mid-stream, so the bound is
/// generous: the listener is meant for Envoy alone (loopback or a private Unix socket).
const ENVOY_CHUNK_SLACK: usize = 32 << 20;

/// Policy warnings logged one by one at start; `check` lists every one.
const MAX_LOGGED_WARNINGS: usize = 20;

/// How often `serve` repeats that no signing key is active.
const KEY_WATCH_INTERVAL: Duration = Duration::from_secs(60);

/// A start-up failure, naming what could not be done.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { addr: String, what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("invalid policy: {} error(s), logged above", .0.0.len())]
    Policy(#[from] warden_core::policy::PolicyErrors),
    #[error("audit output: {0}")]
    Audit(std::io::Error),
    #[error("ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: std::io::Error },
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("authentication.jwt: {0}")]
    Jwt(#[from] JwtConfigError),
    #[error("authentication.jwt: {0}")]
    Jwks(#[from] jwks::JwksError),
    #[error("authentication.jwt: {0}")]
    MappedRoles(#[from] UnknownRoles),
    #[error("server: {0}")]
    Serve(String),
}

/// Runs until a shutdown signal.
pub async fn serve(config: Config, ready_file: Option<&Path>) -> Result<(), StartError> {
    let grpc = crate::grpc::Listener::bind(&config.grpc_listen).await.map_err(|source| StartError::Bind {
        addr: config.grpc_listen.to_string(),
        what: "gRPC",
        source,
    })?;
    let http = TcpListener::bind(config.http_listen).await.map_err(|source| StartError::Bind {
        addr: config.http_listen.to_string(),
        what: "HTTP",
        source,
    })?;
    let grpc_addr = grpc.local().map_err(|e| StartError::Serve(e.to_string()))?;
    let http_addr = http.local_addr().map_err(|e| StartError::Serve(e.to_string()))?;
    let issuer = config.issuer.clone().unwrap_or_else(|| format!("http://{http_addr}"));

    let ring = load_keys(&config)?;
    let policy = load_policy(&config)?;
    let audit = Audit::start(&config.audit).map_err(StartError::Audit)?;
    let settings = Settings {
        token: TokenSettings { issuer: issuer.as_str().into(), lifetime: config.token_lifetime },
        limits: config.limits,
        denied_status: config.denied_status,
        auth_order: config.auth_order.clone(),
        audit_skip_allowed: config.audit_skip_allowed.clone(),
        envoy_metadata: config.envoy_metadata,
        bounds: config.bounds,
    };
    let verifier = config.jwt.as_ref().map(|j| jwt_verifier(j, &issuer, &policy)).transpose()?;
    let mut warden = Warden::new(policy, ring, settings, audit);
    if let Some(v) = &verifier {
        warden = warden.with_jwt(v.clone());
    }
    let warden = Arc::new(warden);
    if let Some(v) = &verifier {
        start_jwks(&warden, v).await?;
    }
    crate::reload::spawn(warden.clone(), &config);
    spawn_key_watch(warden.clone());

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving).await;
    health_reporter.set_serving::<ExternalProcessorServer<ListFilterService>>().await;
    let reflection = crate::grpc::reflection::service().map_err(|e| StartError::Reflection(e.to_string()))?;
    let reflection_alpha =
        crate::grpc::reflection::service_v1alpha().map_err(|e| StartError::Reflection(e.to_string()))?;
    let routes = tonic::service::Routes::new(
        ExternalProcessorServer::new(ListFilterService::new(warden.clone(), config.list_filter))
            .max_decoding_message_size(config.list_filter.max_event_bytes + ENVOY_CHUNK_SLACK),
    )
    .add_service(health)
    .add_service(reflection)
    .add_service(reflection_alpha);
    let grpc_server = crate::grpc::serve(grpc, crate::grpc::Services { warden: warden.clone(), routes }, shutdown());
    let http_server =
        axum::serve(http, crate::http::router(warden.clone(), config.jwks_max_age)).with_graceful_shutdown(shutdown());

    tracing::info!(grpc = %grpc_addr, http = %http_addr, issuer = %issuer, "mcp-warden listening");
    if let Some(path) = ready_file {
        write_ready_file(path, &grpc_addr, http_addr, &issuer)
            .map_err(|source| StartError::ReadyFile { path: path.to_owned(), source })?;
    }
    let ((), h) = tokio::join!(grpc_server, async { http_server.await });
    warden.close_audit();
    h.map_err(|e| StartError::Serve(e.to_string()))?;
    tracing::info!("mcp-warden stopped");
    Ok(())
}

/// The signing keys `serve` starts with: the configured PEM, or the key directory's ring (a
/// writable directory with no key gets one, created with the directory if need be).
fn load_keys(config: &Config) -> Result<KeyRing, StartError> {
    if let Some(path) = &config.signing_key {
        let key = keys::load_pem_file(path)?;
        tracing::info!(path = %path.display(), kid = key.kid(), "loaded signing key (no rotation)");
        return Ok(KeyRing::single(key));
    }
    let now = SystemTime::now();
    let dir = config.keys.dir.display();
    if let KeyStart::Create { dir_exists: false } = config.keys.inspect_start(now)? {
        tracing::warn!(dir = %dir, "key directory does not exist: creating it (`mcp-warden check` reports this)");
    }
    let (ring, created) = config.keys.load_or_init(now)?;
    match (ring.active(now), created) {
        (Some(k), true) => tracing::info!(dir = %dir, kid = k.kid(), "generated a new RSA 2048 signing key"),
        (Some(k), false) => tracing::info!(dir = %dir, kid = k.kid(), "loaded signing keys"),
        (None, _) => {
            let reason = ring.inactive_reason(now).unwrap_or_default();
            tracing::warn!(dir = %dir, reason = %reason, "loaded signing keys, but none signs yet: allowed calls fail");
        }
    }
    Ok(ring)
}

/// The policy, its warnings logged one by one.
fn load_policy(config: &Config) -> Result<Policy, StartError> {
    let policy = crate::policy_files::load(&config.policy)?;
    let warnings = policy.warnings();
    for w in warnings.iter().take(MAX_LOGGED_WARNINGS) {
        tracing::warn!(warning = %w, "policy");
    }
    if warnings.len() > MAX_LOGGED_WARNINGS {
        let more = warnings.len() - MAX_LOGGED_WARNINGS;
        tracing::warn!(more, "more policy warnings: `mcp-warden check` lists them all");
    }
    tracing::info!(
        apps = policy.apps().len(),
        users = policy.users().len(),
        roles = policy.role_names().len(),
        source = if config.path.is_some() { "config" } else { "embedded demo policy" },
        "policy loaded"
    );
    Ok(policy)
}

/// While no key signs, every allowed call fails: say so every minute, and why.
fn spawn_key_watch(warden: Arc<Warden>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_WATCH_INTERVAL);
        loop {
            tick.tick().await;
            if let Some(reason) = warden.key_ring().inactive_reason(SystemTime::now()) {
                tracing::warn!(reason = %reason, "no signing key is active: allowed calls are refused (/readyz is 503)");
            }
        }
    });
}

/// Builds the `jwt` method's verifier; a `claims_to_roles` role the policy lacks is a
/// start-up error (after a reload it becomes a per-request denial).
pub(crate) fn jwt_verifier(config: &JwtConfig, issuer: &str, policy: &Policy) -> Result<Arc<Verifier>, StartError> {
    let verifier = Verifier::new(config.clone(), Arc::default(), issuer)?;
    crate::identity::idp::check_mapped_roles(config, policy)?;
    Ok(Arc::new(verifier))
}

/// Starts the identity provider's key refresh and waits (bounded) for its first fetch, so
/// the first JWT after start-up finds keys; an IdP that is down does not stop start-up.
async fn start_jwks(warden: &Arc<Warden>, verifier: &Verifier) -> Result<(), StartError> {
    let config = verifier.config();
    let fetcher = jwks::Fetcher::new(config)?;
    let schedule = jwks::Schedule { refresh: config.refresh_interval, min_refresh: config.min_refresh_interval };
    let w = warden.clone();
    jwks::spawn(verifier.keys().clone(), fetcher, schedule, move |result| w.metrics.jwks_fetch(result));
    let cache = verifier.keys();
    if cache.wait_attempts(1, jwks::FETCH_TIMEOUT + Duration::from_secs(1)).await && !cache.current().is_empty() {
        tracing::info!(issuer = %config.issuer, keys = cache.current().len(), "identity-provider keys ready");
    } else {
        tracing::warn!(issuer = %config.issuer, "no identity-provider keys yet: JWTs are refused until a fetch succeeds");
    }
    Ok(())
}

fn write_ready_file(path: &Path, grpc: &str, http: SocketAddr, issuer: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "grpc": grpc, "http": http.to_string(), "issuer": issuer }).to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, path)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
