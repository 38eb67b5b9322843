//! The signing-key lifecycle over a key directory: **next** (published, not yet signing),
//! **active** (signing), **retired** (still published so tokens it signed verify), then gone.
//!
//! The directory holds `keyring.json` and one `<kid>.pem` (mode 0600) per key. States are
//! derived from timestamps, so a running server needs to write nothing: `rotate` adds a key
//! whose `active_from` lies one propagation delay ahead; once that time passes every replica
//! switches to it on its own, and the key it replaced stays published for the retention
//! time. A read-only directory (a Secret shared by replicas) is loaded and watched only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::keys::{self, Jwk, KeyError, SigningKey};

/// The manifest's file name inside the key directory.
pub const MANIFEST: &str = "keyring.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    keys: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kid: String,
    file: String,
    created: u64,
    active_from: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<u64>,
}

/// A key's state at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    Retired,
    /// Retired longer than the retention time: no longer published.
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

/// One loaded key with its schedule.
#[derive(Debug)]
pub struct RingKey {
    pub key: Arc<SigningKey>,
    pub created: u64,
    pub active_from: u64,
    pub retired_at: Option<u64>,
    /// When this server first published the key.
    seen: SystemTime,
    /// When it may sign here: `active_from`, but never before it has been published for the
    /// propagation delay by this server (a key already due when first seen — the first key,
    /// or one that became active while this server was down — signs at once).
    signs_from: u64,
}

/// Every key a server knows, in `active_from` order.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RingKey>,
    retain: Duration,
}

/// Whose view of time `KeyDir::load` takes for keys it has not seen before.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'r> {
    /// A server at `now`; keys already in `previous` keep the time they were first published.
    Server { now: SystemTime, previous: Option<&'r KeyRing> },
    /// The manifest's own schedule, as if every key was published when it was created (the CLI).
    Manifest,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl KeyRing {
    /// A ring of one key that is always active (a configured `signing_key` PEM).
    pub fn single(key: SigningKey) -> Self {
        KeyRing {
            keys: vec![RingKey {
                key: Arc::new(key),
                created: 0,
                active_from: 0,
                retired_at: None,
                seen: UNIX_EPOCH,
                signs_from: 0,
            }],
            retain: Duration::ZERO,
        }
    }

    fn eligible(k: &RingKey, now: u64) -> bool {
        k.signs_from <= now && k.retired_at.is_none_or(|r| r > now)
    }

    /// The key that signs at `now`: the latest-scheduled eligible one.
    pub fn active(&self, now: SystemTime) -> Option<&Arc<SigningKey>> {
        let now = secs(now);
        self.keys.iter().rev().find(|k| Self::eligible(k, now)).map(|k| &k.key)
    }

    /// The state of the `i`th key at `now`.
    fn state_of(&self, i: usize, now: u64) -> KeyState {
        let k = &self.keys[i];
        let retain = self.retain.as_secs();
        if let Some(r) = k.retired_at.filter(|r| *r <= now) {
            return if now < r + retain { KeyState::Retired } else { KeyState::Expired };
        }
        if k.signs_from > now {
            return KeyState::Next;
        }
        // Superseded when a later-scheduled key became active.
        match self.keys[i + 1..].iter().filter(|l| Self::eligible(l, now)).map(|l| l.signs_from).min() {
            None => KeyState::Active,
            Some(t) if now < t + retain => KeyState::Retired,
            Some(_) => KeyState::Expired,
        }
    }

    /// Each key with its state at `now`.
    pub fn states(&self, now: SystemTime) -> Vec<(&RingKey, KeyState)> {
        let now = secs(now);
        (0..self.keys.len()).map(|i| (&self.keys[i], self.state_of(i, now))).collect()
    }

    /// Why no key signs at `now` (for `/readyz` and `serve`'s warning); `None` when one does.
    pub fn inactive_reason(&self, now: SystemTime) -> Option<String> {
        if self.active(now).is_some() {
            return None;
        }
        let t = secs(now);
        let next = self.keys.iter().filter(|k| k.signs_from > t && k.retired_at.is_none_or(|r| r > k.signs_from));
        Some(match next.min_by_key(|k| k.signs_from) {
            Some(k) => format!("no signing key is active: '{}' signs from {}", k.key.kid(), when(k.signs_from, t)),
            None if self.keys.is_empty() => "no signing key: the key directory holds none".to_owned(),
            None => "no signing key is active: every key is retired (run `mcp-warden keys rotate`)".to_owned(),
        })
    }

    /// Public keys to publish at `now`: next, active and recently retired.
    pub fn published(&self, now: SystemTime) -> Vec<&Jwk> {
        self.states(now).into_iter().filter(|(_, s)| *s != KeyState::Expired).map(|(k, _)| k.key.jwk()).collect()
    }
}

/// Where keys live and how they rotate.
#[derive(Debug, Clone)]
pub struct KeyDir {
    pub dir: PathBuf,
    pub read_only: bool,
    /// How long a new key is published before it signs (≥ verifiers' JWKS cache lifetime).
    pub propagation: Duration,
    /// How long a replaced key stays published (≥ token lifetime + JWKS cache lifetime).
    pub retain: Duration,
}

impl KeyDir {
    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    fn err(&self, path: &Path, e: impl ToString) -> KeyError {
        KeyError::File { path: path.to_owned(), reason: e.to_string() }
    }

    fn read_manifest(&self) -> Result<Option<Manifest>, KeyError> {
        let path = self.manifest_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| self.err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    /// Loads every key in the manifest. A read-only directory without a manifest may hold
    /// exactly one PEM, which is then active.
    pub fn load(&self, seen: Seen<'_>) -> Result<KeyRing, KeyError> {
        let Some(manifest) = self.read_manifest()? else {
            return self.load_bare();
        };
        let mut keys = Vec::with_capacity(manifest.keys.len());
        for e in &manifest.keys {
            let path = self.dir.join(&e.file);
            let pem = std::fs::read_to_string(&path).map_err(|err| self.err(&path, err))?;
            let key = SigningKey::from_pem(&pem, &path)?;
            if key.kid() != e.kid {
                return Err(self.err(&path, format!("kid {} does not match the manifest's {}", key.kid(), e.kid)));
            }
            let first_seen = match seen {
                Seen::Manifest => UNIX_EPOCH + Duration::from_secs(e.created),
                Seen::Server { now, previous } => {
                    previous.and_then(|p| p.keys.iter().find(|k| k.key.kid() == e.kid)).map_or(now, |k| k.seen)
                }
            };
            keys.push(RingKey {
                key: Arc::new(key),
                created: e.created,
                active_from: e.active_from,
                retired_at: e.retired_at,
                seen: first_seen,
                signs_from: signs_from(e.active_from, first_seen, self.propagation),
            });
        }
        keys.sort_by_key(|k| k.active_from);
        Ok(KeyRing { keys, retain: self.retain })
    }

    fn load_bare(&self) -> Result<KeyRing, KeyError> {
        let pems: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem") && !is_hidden(p))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.err(&self.dir, e)),
        };
        match pems.as_slice() {
            [] => Ok(KeyRing { keys: Vec::new(), retain: self.retain }),
            [one] => {
                let pem = std::fs::read_to_string(one).map_err(|e| self.err(one, e))?;
                Ok(KeyRing::single(SigningKey::from_pem(&pem, one)?))
            }
            _ => Err(self.err(
                &self.dir,
                format!("several keys but no {MANIFEST}: run `mcp-warden keys rotate` on a writable copy"),
            )),
        }
    }

    /// What `serve` finds at start, changing nothing: the ring, or the first key it would
    /// create. `serve` acts on this and `check` reports it, so both apply the same rules.
    pub fn inspect_start(&self, now: SystemTime) -> Result<KeyStart, KeyError> {
        let ring = self.load(Seen::Server { now, previous: None })?;
        if !ring.keys.is_empty() {
            return Ok(KeyStart::Ring(ring));
        }
        if self.read_only {
            return Err(self.err(&self.dir, "read-only key directory holds no key"));
        }
        Ok(KeyStart::Create { dir_exists: self.dir.is_dir() })
    }

    /// Loads the ring; a writable, empty directory gets a first key, active at once.
    pub fn load_or_init(&self, now: SystemTime) -> Result<(KeyRing, bool), KeyError> {
        match self.inspect_start(now)? {
            KeyStart::Ring(ring) => Ok((ring, false)),
            KeyStart::Create { .. } => {
                self.add_key(now, Duration::ZERO)?;
                Ok((self.load(Seen::Server { now, previous: None })?, true))
            }
        }
    }

    /// Fails unless the key directory exists: only `keys init` (and `serve`'s first start)
    /// create it, so a misspelt path is an error rather than a new, empty directory.
    pub fn require_dir(&self) -> Result<(), KeyError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        Err(self.err(&self.dir, "key directory does not exist (create it with `mcp-warden keys init`)"))
    }

    /// `keys init`: creates the directory and a first key that signs at once. Refused when
    /// the directory already holds keys.
    pub fn init(&self, now: SystemTime) -> Result<String, KeyError> {
        if !self.load(Seen::Manifest)?.keys.is_empty() {
            return Err(self.err(&self.dir, "already holds keys (see `mcp-warden keys list`)"));
        }
        self.add_key(now, Duration::ZERO)
    }

    /// Adds a key that signs after the propagation delay (at once when no key can sign now:
    /// nothing signs meanwhile anyway). Refused while a next key still waits, unless `force`;
    /// a forced key is scheduled after the waiting one, so no two keys start together.
    pub fn rotate(&self, now: SystemTime, force: bool) -> Result<Rotated, KeyError> {
        self.require_dir()?;
        let manifest = self.read_manifest()?.unwrap_or_default();
        let t = secs(now);
        let waiting = manifest.keys.iter().filter(|k| k.active_from > t && k.retired_at.is_none());
        let last = waiting.max_by_key(|k| k.active_from);
        if let (Some(next), false) = (last, force) {
            return Err(self.err(
                &self.manifest_path(),
                format!(
                    "key '{}' is already next: it signs from {}; rotate again after that, or pass --force to add another after it",
                    next.kid,
                    when(next.active_from, t)
                ),
            ));
        }
        let can_sign = manifest.keys.iter().any(|k| k.active_from <= t && k.retired_at.is_none_or(|r| r > t));
        let mut delay = if can_sign { self.propagation } else { Duration::ZERO };
        if let Some(next) = last {
            delay = delay.max(Duration::from_secs(next.active_from + 1 - t));
        }
        let kid = self.add_key(now, delay)?;
        Ok(Rotated { kid, active_from: t + delay.as_secs(), immediate: delay.is_zero() })
    }

    /// The directory's content as a Secret holds it: the manifest, then every key file it
    /// lists (each read and checked against its kid), by file name.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
        let path = self.manifest_path();
        let manifest = self.read_manifest()?.ok_or_else(|| self.err(&path, "no manifest: run `keys rotate` first"))?;
        self.load(Seen::Manifest)?;
        let mut files = vec![(MANIFEST.to_owned(), std::fs::read(&path).map_err(|e| self.err(&path, e))?)];
        for e in &manifest.keys {
            let key_path = self.dir.join(&e.file);
            files.push((e.file.clone(), std::fs::read(&key_path).map_err(|err| self.err(&key_path, err))?));
        }
        Ok(files)
    }

    fn add_key(&self, now: SystemTime, delay: Duration) -> Result<String, KeyError> {
        if self.read_only {
            return Err(self.err(&self.dir, "key directory is read-only"));
        }
        let mut manifest = self.read_manifest()?.unwrap_or_default();
        let (key, pem) = SigningKey::generate()?;
        let file = format!("{}.pem", key.kid());
        keys::write_private(&self.dir, &self.dir.join(&file), pem.as_bytes())?;
        let created = secs(now);
        manifest.keys.push(Entry {
            kid: key.kid().to_owned(),
            file,
            created,
            active_from: created + delay.as_secs(),
            retired_at: None,
        });
        self.write_manifest(&manifest)?;
        Ok(key.kid().to_owned())
    }

    /// Marks `kid` retired now: it stops signing (if it was) and is unpublished after the
    /// retention time. Refused, saying why and when it becomes possible, when it would leave
    /// no published key to sign with.
    pub fn retire(&self, kid: &str, now: SystemTime) -> Result<(), KeyError> {
        if self.read_only {
            return Err(self.err(&self.dir, "key directory is read-only"));
        }
        self.require_dir()?;
        let mut manifest = self.read_manifest()?.ok_or_else(|| self.err(&self.manifest_path(), "no manifest"))?;
        let t = secs(now);
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            let known: Vec<&str> = manifest.keys.iter().map(|k| k.kid.as_str()).collect();
            return Err(self.err(&self.manifest_path(), format!("no key '{kid}' (known: {})", known.join(", "))));
        };
        if let Some(r) = manifest.keys[i].retired_at.filter(|r| *r <= t) {
            return Err(self.err(&self.manifest_path(), format!("'{kid}' was already retired at {}", when(r, t))));
        }
        if let Err(why) = retire_check(&manifest.keys, i, t, self.retain.as_secs()) {
            return Err(self.err(&self.manifest_path(), format!("cannot retire '{kid}' now: {why}")));
        }
        manifest.keys[i].retired_at = Some(t);
        self.write_manifest(&manifest)
    }

    fn write_manifest(&self, m: &Manifest) -> Result<(), KeyError> {
        let path = self.manifest_path();
        let text = serde_json::to_string_pretty(m).map_err(|e| self.err(&path, e))?;
        keys::write_private(&self.dir, &path, text.as_bytes())
    }
}

/// Why a key cannot be retired now, naming the keys and the times involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RetireRefused {
    #[error(
        "the key that would sign instead, '{successor}', left the JWKS at {left}; run `keys rotate` and retire '{kid}' once the new key signs"
    )]
    SuccessorUnpublished { successor: String, left: String, kid: String },
    #[error("it has not started signing (from {from}) and no other key can sign; run `keys rotate` first")]
    NotStarted { from: String },
    #[error(
        "it is the key signing now; '{next}' takes over at {takes_over} and '{kid}' then retires on its own (retiring it earlier would sign with a key verifiers may not have fetched yet)"
    )]
    SigningNow { next: String, takes_over: String, kid: String },
    #[error(
        "it is the only key that can sign; run `keys rotate` first: it retires on its own when the new key takes over"
    )]
    OnlyKey,
}

/// Why retiring the `i`th key at `t` would leave no published key that may sign, and when
/// that changes. The key that would sign instead is the latest-scheduled other one that may
/// sign now; it must still be published: a key superseded longer than `retain` ago has left
/// the JWKS, and verifiers would refuse its tokens until they fetched it again.
fn retire_check(keys: &[Entry], i: usize, t: u64, retain: u64) -> Result<(), RetireRefused> {
    let may_sign = |k: &Entry| k.active_from <= t && k.retired_at.is_none_or(|r| r > t);
    let successor = (keys.iter().enumerate())
        .filter(|&(j, k)| j != i && may_sign(k))
        .max_by_key(|(_, k)| k.active_from)
        .map(|(_, k)| k);
    let superseded_at = |k: &Entry| {
        (keys.iter())
            .filter(|l| l.active_from > k.active_from && l.active_from <= t)
            .filter(|l| l.retired_at.is_none_or(|r| r > l.active_from))
            .map(|l| l.active_from)
            .min()
    };
    let next = (keys.iter().enumerate())
        .filter(|&(j, k)| j != i && k.active_from > t && k.retired_at.is_none())
        .min_by_key(|(_, k)| k.active_from)
        .map(|(_, k)| k);
    let target = &keys[i];
    match successor {
        Some(k) => match superseded_at(k) {
            Some(s) if t >= s + retain => Err(RetireRefused::SuccessorUnpublished {
                successor: k.kid.clone(),
                left: when(s + retain, t),
                kid: target.kid.clone(),
            }),
            _ => Ok(()),
        },
        None if target.active_from > t => Err(RetireRefused::NotStarted { from: when(target.active_from, t) }),
        None => match next {
            Some(n) => Err(RetireRefused::SigningNow {
                next: n.kid.clone(),
                takes_over: when(n.active_from, t),
                kid: target.kid.clone(),
            }),
            None => Err(RetireRefused::OnlyKey),
        },
    }
}

/// What `serve` finds in the key directory at start.
#[derive(Debug)]
pub enum KeyStart {
    /// Keys to load.
    Ring(KeyRing),
    /// No key yet: a writable directory gets a first key (and is created if it is missing).
    Create { dir_exists: bool },
}

/// A key added by `rotate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub kid: String,
    /// Unix seconds.
    pub active_from: u64,
    /// No key could sign, so the new one signs at once.
    pub immediate: bool,
}

/// `2026-12-07T20:30:00Z (in 5m)` / `(5m ago)` / `(now)`: Unix seconds `at`, seen at `now`.
pub fn when(at: u64, now: u64) -> String {
    let hint = match at.cmp(&now) {
        std::cmp::Ordering::Equal => "now".to_owned(),
        std::cmp::Ordering::Greater => format!("in {}", span(at - now)),
        std::cmp::Ordering::Less => format!("{} ago", span(now - at)),
    };
    format!("{} ({hint})", rfc3339(at))
}

/// `1h 5m`, `5m 30s`, `45s`, `3d 2h`: the two largest units.
fn span(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size || (size == 1 && parts.is_empty()) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && rest == 0) {
            break;
        }
    }
    parts.join(" ")
}

/// RFC 3339 in UTC, to the second (days to civil date: Howard Hinnant's algorithm).
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// See [`RingKey`]: a key due when first seen signs at once; otherwise not before it has been
/// published for `propagation` (rounded up to the next second).
fn signs_from(active_from: u64, seen: SystemTime, propagation: Duration) -> u64 {
    let seen_at = seen.duration_since(UNIX_EPOCH).unwrap_or_default();
    if active_from <= seen_at.as_secs() {
        return active_from;
    }
    let published_enough = (seen_at + propagation).as_secs_f64().ceil() as u64;
    active_from.max(published_enough)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tmp: &Path) -> KeyDir {
        KeyDir {
            dir: tmp.join("keys"),
            read_only: false,
            propagation: Duration::from_secs(60),
            retain: Duration::from_secs(600),
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn first_start_creates_one_active_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (ring, created) = d.load_or_init(at(0)).expect("init");
        assert!(created);
        assert!(ring.active(at(0)).is_some());
        let (again, created) = d.load_or_init(at(5)).expect("reload");
        assert!(!created);
        assert_eq!(again.active(at(5)).map(|k| k.kid().to_owned()), ring.active(at(0)).map(|k| k.kid().to_owned()));
    }

    #[test]
    fn rotation_publishes_first_then_switches_then_retires() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (ring, _) = d.load_or_init(at(0)).expect("init");
        let old = ring.active(at(0)).expect("active").kid().to_owned();
        let new = d.rotate(at(100), false).expect("rotate").kid;
        let ring = d.load(Seen::Manifest).expect("load");
        // Published but not yet signing.
        assert_eq!(ring.active(at(159)).map(|k| k.kid()), Some(old.as_str()));
        assert!(ring.published(at(100)).iter().any(|j| j.kid == new));
        // Signing after the propagation delay; the old key stays published for `retain`.
        assert_eq!(ring.active(at(160)).map(|k| k.kid()), Some(new.as_str()));
        let states: Vec<_> = ring.states(at(160)).into_iter().map(|(k, s)| (k.key.kid().to_owned(), s)).collect();
        assert!(states.contains(&(old.clone(), KeyState::Retired)));
        assert!(ring.published(at(759)).iter().any(|j| j.kid == old));
        assert!(!ring.published(at(760)).iter().any(|j| j.kid == old));
    }

    #[test]
    fn a_server_signs_with_a_new_key_only_after_publishing_it_for_the_propagation_delay() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (first, _) = d.load_or_init(at(0)).expect("init");
        let old = first.active(at(0)).expect("active").kid().to_owned();
        let new = d.rotate(at(100), false).expect("rotate").kid; // due at 160
        // This server only notices the new key at 130: it publishes from then on, and signs
        // with it at 190, not 160.
        let ring = d.load(Seen::Server { now: at(130), previous: Some(&first) }).expect("reload");
        assert!(ring.published(at(130)).iter().any(|j| j.kid == new));
        assert_eq!(ring.active(at(189)).map(|k| k.kid()), Some(old.as_str()));
        assert_eq!(ring.active(at(190)).map(|k| k.kid()), Some(new.as_str()));
        // A later reload keeps the first-seen time.
        let again = d.load(Seen::Server { now: at(185), previous: Some(&ring) }).expect("reload");
        assert_eq!(again.active(at(190)).map(|k| k.kid()), Some(new.as_str()));
    }

    #[test]
    fn rotating_an_empty_directory_makes_a_key_that_signs_at_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        std::fs::create_dir_all(&d.dir).expect("mkdir");
        let first = d.rotate(at(0), false).expect("rotate");
        assert!(first.immediate);
        let first = first.kid;
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(0)).map(|k| k.kid()), Some(first.as_str()));
        let second = d.rotate(at(10), false).expect("rotate");
        assert_eq!(second.active_from, secs(at(10)) + d.propagation.as_secs());
        let second = second.kid;
        let ring = d.load(Seen::Manifest).expect("load");
        assert_eq!(ring.active(at(69)).map(|k| k.kid()), Some(first.as_str()));
        assert_eq!(ring.active(at(70)).map(|k| k.kid()), Some(second.as_str()));
    }

    #[test]
    fn files_are_the_manifest_and_every_key_it_lists() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        assert!(d.files().is_err(), "no manifest yet");
        std::fs::create_dir_all(&d.dir).expect("mkdir");
        let a = d.rotate(at(0), false).expect("rotate").kid;
        let b = d.rotate(at(1), false).expect("rotate").kid;
        std::fs::write(d.dir.join("stray.pem"), "not listed").expect("write");
        let names: Vec<String> = d.files().expect("files").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [MANIFEST.to_owned(), format!("{a}.pem"), format!("{b}.pem")]);
    }

    #[test]
    fn retiring_the_only_signing_key_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (ring, _) = d.load_or_init(at(0)).expect("init");
        let kid = ring.active(at(0)).expect("active").kid().to_owned();
        assert!(d.retire(&kid, at(1)).is_err());
    }

    #[test]
    fn retiring_the_new_key_brings_the_old_one_back_only_while_it_is_still_published() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (ring, _) = d.load_or_init(at(0)).expect("init");
        let old = ring.active(at(0)).expect("active").kid().to_owned();
        let new = d.rotate(at(100), false).expect("rotate").kid; // signs from 160; old published until 760
        // Long after the old key left the JWKS: it must not sign again at once.
        let err = d.retire(&new, at(2000)).expect_err("old key is unpublished");
        assert!(err.to_string().contains("left the JWKS"), "{err}");
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(2000)).map(|k| k.kid()), Some(new.as_str()));
        // Within the retention time it is still published, so it may take over.
        d.retire(&new, at(700)).expect("old key is still published");
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(701)).map(|k| k.kid()), Some(old.as_str()));
    }

    #[test]
    fn no_command_creates_the_key_directory_but_init() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let e = d.rotate(at(0), false).expect_err("missing dir");
        assert!(e.to_string().contains("keys init"), "{e}");
        assert!(d.retire("x", at(0)).is_err());
        assert!(!d.dir.exists());
        assert!(matches!(d.inspect_start(at(0)), Ok(KeyStart::Create { dir_exists: false })));
        assert!(!d.dir.exists(), "inspecting changes nothing");
        d.init(at(0)).expect("init");
        assert!(d.init(at(1)).is_err(), "init refuses a directory that holds keys");
    }

    #[test]
    fn rotating_an_empty_directory_signs_at_once_and_a_waiting_next_key_refuses_a_second_rotate() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        std::fs::create_dir(&d.dir).expect("mkdir");
        let first = d.rotate(at(0), false).expect("rotate");
        assert!(first.immediate);
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(0)).map(|k| k.kid().to_owned()), Some(first.kid));
        let next = d.rotate(at(10), false).expect("rotate");
        assert_eq!(next.active_from, secs(at(70)));
        let e = d.rotate(at(20), false).expect_err("a next key waits").to_string();
        assert!(e.contains(&next.kid) && e.contains("--force") && e.contains("(in 50s)"), "{e}");
        let forced = d.rotate(at(20), true).expect("forced");
        assert!(forced.active_from > next.active_from, "never two keys starting together");
    }

    #[test]
    fn retire_says_why_not_and_when() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        let (ring, _) = d.load_or_init(at(0)).expect("init");
        let old = ring.active(at(0)).expect("active").kid().to_owned();
        let e = d.retire(&old, at(1)).expect_err("only key").to_string();
        assert!(e.contains("only key that can sign") && e.contains("keys rotate"), "{e}");
        let new = d.rotate(at(100), false).expect("rotate").kid;
        let e = d.retire(&old, at(101)).expect_err("new key not yet signing").to_string();
        assert!(e.contains(&new) && e.contains("takes over at") && e.contains("(in 59s)"), "{e}");
        d.retire(&new, at(102)).expect("a next key may be retired while the old one signs");
        let e = d.retire(&new, at(103)).expect_err("twice").to_string();
        assert!(e.contains("already retired"), "{e}");
        let e = d.retire("nope", at(103)).expect_err("unknown").to_string();
        assert!(e.contains(&old), "{e}");
    }

    #[test]
    fn an_inactive_ring_says_why() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        std::fs::create_dir(&d.dir).expect("mkdir");
        assert!(d.load(Seen::Manifest).expect("empty").inactive_reason(at(0)).is_some());
        d.rotate(at(0), false).expect("first");
        assert_eq!(d.load(Seen::Manifest).expect("load").inactive_reason(at(0)), None);
    }

    #[test]
    fn times_print_as_rfc3339_with_a_relative_hint() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(when(400, 100), "1970-01-01T00:06:40Z (in 5m)");
        assert_eq!(when(100, 3800), "1970-01-01T00:01:40Z (1h 1m ago)");
        assert_eq!(when(5, 5), "1970-01-01T00:00:05Z (now)");
        assert_eq!(span(45), "45s");
        assert_eq!(span(330), "5m 30s");
    }

    #[test]
    fn read_only_directory_loads_a_single_pem_and_never_writes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (key, pem) = SigningKey::generate().expect("key");
        std::fs::create_dir(tmp.path().join("keys")).expect("mkdir");
        std::fs::write(tmp.path().join("keys/tls.pem"), pem).expect("write");
        let d = KeyDir { read_only: true, ..dir(tmp.path()) };
        let (ring, created) = d.load_or_init(at(0)).expect("load");
        assert!(!created);
        assert_eq!(ring.active(at(0)).map(|k| k.kid()), Some(key.kid()));
        assert!(d.rotate(at(1), false).is_err());
    }
}
