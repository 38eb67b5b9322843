//! Hot reload, off the request path: policy files and the key directory are watched through
//! their parent directories (so Kubernetes `..data` symlink swaps, editors' rename-on-save
//! and `mv` replacements are all seen), changes are debounced, fully validated, then swapped
//! in atomically. A failed reload keeps the previous policy, logs every error with its file
//! and line, and counts it. SIGHUP reloads too. A once-a-second tick notices a scheduled
//! signing-key switch.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::keyring::{KeyDir, Seen};
use crate::state::Warden;
use warden_core::policy::{PolicyError, Source};

/// Quiet time after the last file event before a reload starts.
const DEBOUNCE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Policy,
    Keys,
}

/// Starts the watcher task. Sources embedded in the binary are not watched.
pub fn spawn(warden: Arc<Warden>, config: &Config) {
    let policy: Vec<Source> = config.policy.clone();
    let keys = config.signing_key.is_none().then(|| config.keys.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = watch(&policy, keys.as_ref(), tx.clone());
    tokio::spawn(async move {
        // The watcher lives as long as the task.
        let _watcher = watcher;
        run(warden, policy, keys, tx, rx).await;
    });
}

fn watch(
    policy: &[Source],
    keys: Option<&KeyDir>,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Option<notify::RecommendedWatcher> {
    let policy_paths: Vec<PathBuf> =
        policy.iter().filter_map(|s| if let Source::Path(p) = s { Some(absolute(p)) } else { None }).collect();
    let key_dir = keys.map(|k| absolute(&k.dir));
    if policy_paths.is_empty() && key_dir.is_none() {
        return None;
    }
    let (watched_policy, watched_keys) = (policy_paths.clone(), key_dir.clone());
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if event.kind.is_access() {
            return;
        }
        for path in &event.paths {
            if watched_keys.as_ref().is_some_and(|k| path.starts_with(k)) {
                let _ = tx.send(Trigger::Keys);
            } else if watched_policy.iter().any(|p| path.starts_with(p) || p.starts_with(path) || same_dir(p, path)) {
                let _ = tx.send(Trigger::Policy);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the file watcher; reload with SIGHUP");
            return None;
        }
    };
    let mut dirs = BTreeSet::new();
    for p in policy_paths.iter().chain(key_dir.iter()) {
        if p.is_dir() {
            dirs.insert((p.clone(), RecursiveMode::Recursive));
        }
        if let Some(parent) = p.parent() {
            dirs.insert((parent.to_owned(), RecursiveMode::NonRecursive));
        }
    }
    for (dir, mode) in dirs {
        if let Err(e) = watcher.watch(&dir, mode) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
        }
    }
    Some(watcher)
}

/// True when `event` is a sibling in the directory of the watched file `p` that can replace
/// it (Kubernetes swaps `..data`, editors write a temporary file then rename).
fn same_dir(p: &std::path::Path, event: &std::path::Path) -> bool {
    !p.is_dir() && p.parent().is_some_and(|d| event.parent() == Some(d))
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

async fn run(
    warden: Arc<Warden>,
    policy: Vec<Source>,
    keys: Option<KeyDir>,
    tx: mpsc::UnboundedSender<Trigger>,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
) {
    spawn_sighup(tx);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut active_kid = current_kid(&warden);
    loop {
        tokio::select! {
            Some(first) = rx.recv() => {
                let mut pending = BTreeSet::from([first as u8]);
                // Debounce: wait until events stop arriving.
                while let Ok(Some(t)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    pending.insert(t as u8);
                }
                if pending.contains(&(Trigger::Policy as u8)) && policy.iter().any(|s| matches!(s, Source::Path(_))) {
                    reload_policy(&warden, &policy).await;
                }
                if let Some(k) = keys.as_ref().filter(|_| pending.contains(&(Trigger::Keys as u8))) {
                    reload_keys(&warden, k).await;
                }
            }
            _ = tick.tick() => {
                let kid = current_kid(&warden);
                if kid != active_kid {
                    tracing::info!(from = %active_kid, to = %kid, "signing key switched");
                    warden.metrics.key_rotated();
                    warden.audit_event("key.rotated", "signing_key_switched", Some(&kid));
                    active_kid = kid;
                }
            }
        }
    }
}

fn current_kid(warden: &Warden) -> String {
    warden.key_ring().active(SystemTime::now()).map(|k| k.kid().to_owned()).unwrap_or_default()
}

fn spawn_sighup(tx: mpsc::UnboundedSender<Trigger>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = tx.send(Trigger::Policy);
            let _ = tx.send(Trigger::Keys);
        }
    });
}

/// Loads and validates off the runtime's workers, then swaps. Public for tests.
pub async fn reload_policy(warden: &Warden, sources: &[Source]) -> bool {
    let sources = sources.to_vec();
    let loaded = tokio::task::spawn_blocking(move || crate::policy_files::load(&sources)).await;
    // A policy that drops a role the identity provider's claims map to would turn every such
    // caller into a per-request failure: refuse it like any other invalid policy.
    if let (Ok(Ok(policy)), Some(jwt)) = (&loaded, warden.jwt())
        && let Err(e) = crate::identity::idp::check_mapped_roles(jwt.config(), policy)
    {
        warden.metrics.reload("error");
        warden.audit_event("policy.reload_failed", "invalid_policy", None);
        tracing::error!(error = %e, "invalid policy for authentication.jwt; keeping the last good policy");
        return false;
    }
    match loaded {
        Ok(Ok(policy)) => {
            // Pinned names seen drifted stay so, and the text found pinned stays known,
            // unless re-pinned (docs/pinning.md).
            policy.inherit_pins(&warden.snapshot().policy);
            let generation = warden.replace_policy(policy);
            warden.metrics.reload("ok");
            warden.audit_event("policy.reloaded", "ok", None);
            tracing::info!(generation, "policy reloaded");
            true
        }
        Ok(Err(errors)) => {
            warden.metrics.reload("error");
            warden.audit_event("policy.reload_failed", "invalid_policy", None);
            // One log line per error: plain-format lines stay whole.
            if errors.0.iter().all(|e| matches!(e, PolicyError::Empty(_) | PolicyError::Io { .. })) {
                for e in &errors.0 {
                    tracing::warn!(error = %e, "policy files missing; keeping the last good policy");
                }
            } else {
                for e in &errors.0 {
                    tracing::error!(error = %e, "invalid policy; keeping the last good policy");
                }
            }
            false
        }
        Err(e) => {
            warden.metrics.reload("error");
            tracing::error!(error = %e, "policy reload task failed");
            false
        }
    }
}

async fn reload_keys(warden: &Warden, dir: &KeyDir) {
    let dir = dir.clone();
    let previous = warden.key_ring();
    let load = move || dir.load(Seen::Server { now: SystemTime::now(), previous: Some(&previous) });
    match tokio::task::spawn_blocking(load).await {
        Ok(Ok(ring)) if ring.active(SystemTime::now()).is_some() => {
            warden.replace_keys(ring);
            tracing::info!("signing keys reloaded");
        }
        Ok(Ok(_)) => tracing::error!("reloaded key directory has no usable key; keeping the current keys"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot reload signing keys; keeping the current keys"),
        Err(e) => tracing::error!(error = %e, "key reload task failed"),
    }
}
