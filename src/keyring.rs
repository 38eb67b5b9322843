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

    /// Loads the ring; a writable, empty directory gets a first key, active at once.
    pub fn load_or_init(&self, now: SystemTime) -> Result<(KeyRing, bool), KeyError> {
        let ring = self.load(Seen::Server { now, previous: None })?;
        if ring.active(now).is_some() || !ring.keys.is_empty() {
            return Ok((ring, false));
        }
        if self.read_only {
            return Err(self.err(&self.dir, "read-only key directory holds no key"));
        }
        self.add_key(now, Duration::ZERO)?;
        Ok((self.load(Seen::Server { now, previous: None })?, true))
    }

    /// Adds a key that signs after the propagation delay; returns its kid and that delay.
    /// The first key of an empty directory signs at once (no verifier can hold an older key
    /// set to refresh).
    pub fn rotate(&self, now: SystemTime) -> Result<(String, Duration), KeyError> {
        let empty = self.read_manifest()?.is_none_or(|m| m.keys.is_empty());
        let delay = if empty { Duration::ZERO } else { self.propagation };
        Ok((self.add_key(now, delay)?, delay))
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
    /// retention time. Refused when it would leave no key to sign with.
    pub fn retire(&self, kid: &str, now: SystemTime) -> Result<(), KeyError> {
        if self.read_only {
            return Err(self.err(&self.dir, "key directory is read-only"));
        }
        let mut manifest = self.read_manifest()?.ok_or_else(|| self.err(&self.manifest_path(), "no manifest"))?;
        let t = secs(now);
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            return Err(self.err(&self.manifest_path(), format!("no key with kid '{kid}'")));
        };
        // The key that would sign instead: the latest-scheduled other one that may sign now. It
        // must still be published: a key superseded longer than `retain` ago has left the
        // JWKS, and verifiers would refuse its tokens until they fetched it again.
        let may_sign = |k: &Entry| k.active_from <= t && k.retired_at.is_none_or(|r| r > t);
        let successor = (manifest.keys.iter().enumerate())
            .filter(|&(j, k)| j != i && may_sign(k))
            .max_by_key(|(_, k)| k.active_from)
            .map(|(_, k)| k);
        let published = successor.is_some_and(|k| {
            let superseded = (manifest.keys.iter())
                .filter(|l| l.active_from > k.active_from && l.active_from <= t)
                .filter(|l| l.retired_at.is_none_or(|r| r > l.active_from))
                .map(|l| l.active_from)
                .min();
            superseded.is_none_or(|s| t < s + self.retain.as_secs())
        });
        if !published {
            return Err(self.err(
                &self.manifest_path(),
                format!("'{kid}' is the only published key that can sign now; rotate first"),
            ));
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
        let (new, _) = d.rotate(at(100)).expect("rotate");
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
        let (new, _) = d.rotate(at(100)).expect("rotate"); // due at 160
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
        let (first, delay) = d.rotate(at(0)).expect("rotate");
        assert_eq!(delay, Duration::ZERO);
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(0)).map(|k| k.kid()), Some(first.as_str()));
        let (second, delay) = d.rotate(at(10)).expect("rotate");
        assert_eq!(delay, d.propagation);
        let ring = d.load(Seen::Manifest).expect("load");
        assert_eq!(ring.active(at(69)).map(|k| k.kid()), Some(first.as_str()));
        assert_eq!(ring.active(at(70)).map(|k| k.kid()), Some(second.as_str()));
    }

    #[test]
    fn files_are_the_manifest_and_every_key_it_lists() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = dir(tmp.path());
        assert!(d.files().is_err(), "no manifest yet");
        let (a, _) = d.rotate(at(0)).expect("rotate");
        let (b, _) = d.rotate(at(1)).expect("rotate");
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
        let (new, _) = d.rotate(at(100)).expect("rotate"); // signs from 160; old published until 760
        // Long after the old key left the JWKS: it must not sign again at once.
        let err = d.retire(&new, at(2000)).expect_err("old key is unpublished");
        assert!(err.to_string().contains("only published key"), "{err}");
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(2000)).map(|k| k.kid()), Some(new.as_str()));
        // Within the retention time it is still published, so it may take over.
        d.retire(&new, at(700)).expect("old key is still published");
        assert_eq!(d.load(Seen::Manifest).expect("load").active(at(701)).map(|k| k.kid()), Some(old.as_str()));
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
        assert!(d.rotate(at(1)).is_err());
    }
}
