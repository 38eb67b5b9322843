//! A strict, single-pass JSON-RPC 2.0 reader for MCP request bodies.
//!
//! Reads the envelope (`jsonrpc`, `id`, `method`, `params`, `result`, `error`) and the few
//! params an access decision needs, while validating the whole document: nesting depth,
//! duplicate keys at every level, and keys that differ from a known key only by case
//! (including the Unicode folds Go's `encoding/json` applies: `ſ`→`s`, `K`→`k`).
//! Anything ambiguous is an error; it never guesses. Borrows from the body; builds no tree.
//!
//! Cost is linear in the body (issue 19), whatever its shape:
//! - one pass of serde_json: each string (escapes and surrogate pairs included) and number
//!   is read once; an escaped key or string value is unescaped once into its own buffer;
//! - nesting stops at `max_depth`, so the reader's recursion is bounded by it;
//! - keys of one object: at most eight (`INLINE_KEYS`) comparisons each, then one lookup in a
//!   set of hashes (foldhash under a key drawn per parse from std's randomly keyed
//!   `RandomState`, see `Keys`), never a scan of the keys seen before; opening or closing an
//!   object allocates and clears nothing (its keys sit, as 8-byte offsets, on one stack kept
//!   per thread between parses; an escaped key is unescaped into one buffer beside it);
//! - the room kept per thread is bounded by the largest body read on it: 8 bytes per key on
//!   the stack, about 9 per key of the index, the unescaped keys of the objects being read;
//!   emptying the index costs what it holds, not its room (see `empty`);
//! - bodies of 2 GiB or more are refused (offsets are 31-bit), far past any body limit;
//! - case variants: only keys of the envelope, `params` and `ref` are folded, each against
//!   a fixed list of at most seven known keys, stopping at the first character that differs;
//! - a batch is read element by element into one `Vec`, each element as a message above,
//!   and reading stops as soon as element `max_batch + 1` starts (`TooManyMessages`): the
//!   rest of an over-size batch is never read, so whether it is well formed is unknown
//!   (such a body is refused as too many messages, not as invalid JSON).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher as _, BuildHasherDefault, Hasher, RandomState};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body is not an acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonRpcError {
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("duplicate key '{0}'")]
    DuplicateKey(String),
    #[error("key '{0}' differs from a JSON-RPC/MCP key only by case")]
    CaseVariant(String),
    #[error("JSON nesting deeper than {0}")]
    TooDeep(usize),
    #[error("'jsonrpc' must be \"2.0\"")]
    NotJsonRpc2,
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
    #[error("empty batch")]
    EmptyBatch,
    #[error("more than {0} messages in one batch")]
    TooManyMessages(usize),
}

impl JsonRpcError {
    /// The JSON-RPC error code for this failure.
    pub fn code(&self) -> i32 {
        match self {
            JsonRpcError::Syntax(_) => -32700,
            _ => -32600,
        }
    }
}

/// A parsed body: one message or a (2025-03-26) batch.
#[derive(Debug)]
pub enum Body<'a> {
    Single(Message<'a>),
    Batch(Vec<Message<'a>>),
}

/// One JSON-RPC message, reduced to what a decision needs.
#[derive(Debug, Default)]
pub struct Message<'a> {
    /// The `id` exactly as sent (a JSON string or number), for echoing.
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    pub has_result_or_error: bool,
    pub params: Params<'a>,
}

/// What `params` holds that a policy may govern.
#[derive(Debug, Default)]
pub struct Params<'a> {
    /// `params.name`; `Err(())` when present but not a string.
    pub name: Option<Result<Cow<'a, str>, ()>>,
    pub uri: Option<Result<Cow<'a, str>, ()>>,
    /// `params.ref` of `completion/complete`.
    pub reference: Option<Reference<'a>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub meta_protocol_version: Option<Cow<'a, str>>,
    pub has_task: bool,
}

/// `completion/complete`'s `ref`: a prompt or a resource template.
#[derive(Debug, Default)]
pub struct Reference<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
}

const ENVELOPE_KEYS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_KEYS: &[&str] = &["name", "uri", "arguments", "_meta", "task", "ref", "cursor"];
const REF_KEYS: &[&str] = &["type", "name", "uri"];
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// Parses `body` with at most `max_depth` levels of nesting and at most `max_batch`
/// messages in a batch (the reader stops where message `max_batch + 1` starts). Text in, so
/// that its strings are not checked for UTF-8 one by one again.
pub fn parse(body: &str, max_depth: usize, max_batch: usize) -> Result<Body<'_>, JsonRpcError> {
    if body.len() >= MAX_BODY {
        // Keys are located by 31-bit offsets and lengths (see `KeyAt`); far past any body limit.
        return Err(JsonRpcError::Invalid("body of 2 GiB or more"));
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let mut cx = Cx { failure: None, keys: Keys::new(body) };
    let result =
        TopSeed { max_depth, max_batch, failure: &mut cx }.deserialize(&mut de).and_then(|b| de.end().map(|()| b));
    cx.keys.give_back();
    match (result, cx.failure) {
        (_, Some(f)) => Err(f),
        (Ok(b), None) => Ok(b),
        (Err(e), None) => Err(JsonRpcError::Syntax(e.to_string())),
    }
}

/// Our own failures travel beside serde's error type, so they keep their meaning.
type Failure<'f, 'de> = &'f mut Cx<'de>;

fn fail<E: de::Error>(cx: &mut Cx<'_>, e: JsonRpcError) -> E {
    let text = e.to_string();
    cx.failure = Some(e);
    E::custom(text)
}

/// True when `key` matches `canonical` as Go's case-insensitive key match would, Unicode
/// folds (`ſ`→`s`, `K`→`k`) included. The list filter applies the same rule to responses.
pub(crate) fn folds_to(key: &str, canonical: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(canonical.chars().map(fold))
}

/// An `id` is kept as sent, but read once as what it is: `Err(None)` unless it is a string or
/// a number; `Err(Some(_))` for a string with an invalid escape (a lone surrogate) or a number
/// out of range (`1e999`), as either would fail anywhere else in the body.
pub(crate) fn read_id(raw: &RawValue) -> Result<(), Option<serde_json::Error>> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if text.contains('\\') => serde_json::from_str::<String>(text).map(drop).map_err(Some),
        Some(b'"') => Ok(()),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Number>(text).map(drop).map_err(Some),
        _ => Err(None),
    }
}

/// What the visitors of one parse share: our own failure, and the keys of the objects
/// being read.
struct Cx<'de> {
    failure: Option<JsonRpcError>,
    keys: Keys<'de>,
}

impl Cx<'_> {
    /// Checks key `at` against a set of known keys: exact → its index; a case variant → error.
    fn classify<E: de::Error>(&mut self, at: KeyAt, known: &[&str]) -> Result<Option<usize>, E> {
        let key = self.keys.text(at);
        if let Some(i) = known.iter().position(|k| *k == key) {
            return Ok(Some(i));
        }
        if known.iter().any(|k| folds_to(key, k)) {
            let key = key.to_owned();
            return Err(fail(self, JsonRpcError::CaseVariant(key)));
        }
        Ok(None)
    }
}

/// Where a key's text is: `(start << 32) | len` in the body, or in [`Scratch::unescaped`]
/// when [`IN_BUFFER`] is set. Eight bytes, so an object of many keys is a compact run of
/// them on [`Scratch::stack`], and closing an object drops nothing.
#[derive(Clone, Copy)]
struct KeyAt(u64);

const IN_BUFFER: u64 = 1 << 31;

/// Bodies this long or longer are refused: every offset and length of a key fits in 31 bits.
const MAX_BODY: usize = 1 << 31;

impl KeyAt {
    fn new(start: usize, len: usize, in_buffer: bool) -> Self {
        // Both below 2^31: the body is (see `parse`), and the buffer holds less than it (each
        // key in it is shorter unescaped than in the body).
        debug_assert!(start < MAX_BODY && len < MAX_BODY);
        let flag = if in_buffer { IN_BUFFER } else { 0 };
        KeyAt(((start as u64) << 32) | (len as u64) | flag)
    }

    fn len(self) -> usize {
        (self.0 & (IN_BUFFER - 1)) as usize
    }
}

/// What a parse needs room for, kept per thread between parses (emptied, its room kept):
/// a body of many keys grows it once per thread, not once per request. Its room is bounded by
/// the largest body read on the thread (`max_body_bytes`): eight bytes per key on the
/// stack, nine per indexed key, the unescaped keys of the objects being read.
#[derive(Default)]
struct Scratch {
    /// The keys of every object being read, innermost object's last.
    stack: Vec<KeyAt>,
    /// Keyed hashes of the keys of the objects with more than [`INLINE_KEYS`] keys.
    index: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Keys that had escapes, unescaped, of the objects being read.
    unescaped: String,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// The keys of every object being read, innermost last, so that an object costs nothing to
/// open or close but its own keys (this runs for every object of every body, most of them
/// with a few keys or none). A key is compared with at most [`INLINE_KEYS`] keys of its
/// object; an object past that many goes into the index: each of its keys is hashed once
/// with foldhash under a key drawn for this parse from std's randomly keyed `RandomState`,
/// told apart per object by its serial number (see [`Seed::hash`]), so a body cannot choose
/// keys that collide. Only an equal hash leads to comparing text, with the keys of that
/// object: a repeat (which ends the parse) or a collision of the keyed 64-bit hash. One index
/// serves every object of the parse, emptied (its room kept) when no object being read uses
/// it, so sibling objects reuse it and neither grows nor frees it again.
struct Keys<'de> {
    body: &'de str,
    scratch: Scratch,
    seed: Option<Seed>,
    /// Objects opened so far: each one's serial is mixed into its keys' hashes.
    objects: u64,
    /// Objects being read whose keys are in the index.
    indexed: usize,
}

const INLINE_KEYS: usize = 8;

impl<'de> Keys<'de> {
    fn new(body: &'de str) -> Self {
        let scratch = SCRATCH.with(Cell::take);
        Keys { body, scratch, seed: None, objects: 0, indexed: 0 }
    }

    /// Empties the scratch and returns it to the thread for the next parse.
    fn give_back(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.stack.clear();
        empty(&mut scratch.index);
        scratch.unescaped.clear();
        SCRATCH.with(|s| s.set(scratch));
    }

    fn text(&self, at: KeyAt) -> &str {
        text_at(self.body, &self.scratch.unescaped, at)
    }

    /// A key as serde read it: borrowed from the body (located there), or unescaped into
    /// the buffer.
    fn locate(&mut self, key: &str, borrowed: bool) -> KeyAt {
        let offset = (key.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        if borrowed && offset <= self.body.len() && key.len() <= self.body.len() - offset {
            return KeyAt::new(offset, key.len(), false);
        }
        let start = self.scratch.unescaped.len();
        self.scratch.unescaped.push_str(key);
        KeyAt::new(start, key.len(), true)
    }
}

/// Empties the index in time linear in what it holds: `clear` writes every control byte of
/// its room, so after one object of 100,000 keys each later object of nine would cost that
/// much again. A room more than eight times what it holds is given up for one that fits.
fn empty(index: &mut HashSet<u64, BuildHasherDefault<Prehashed>>) {
    if index.is_empty() {
        // Its room is kept (for the next parse on this thread, too).
    } else if index.capacity() > 8 * index.len().max(INLINE_KEYS * 4) {
        *index = HashSet::with_capacity_and_hasher(index.len(), BuildHasherDefault::default());
    } else {
        index.clear();
    }
}

/// The text of key `at`: in `body`, or in `unescaped` (the buffer of [`Scratch`]).
fn text_at<'a>(body: &'a str, unescaped: &'a str, at: KeyAt) -> &'a str {
    let start = (at.0 >> 32) as usize;
    let range = start..start + at.len();
    let text = if at.0 & IN_BUFFER == 0 { body.get(range) } else { unescaped.get(range) };
    text.unwrap_or_default()
}

/// The per-parse hash key of the index.
struct Seed {
    shared: foldhash::SharedSeed,
    per_parse: u64,
}

impl Seed {
    /// Drawn from std's `RandomState` (keyed from the OS's randomness once per thread, then
    /// stepped per use), so every parse hashes under a key the client never sees.
    fn new() -> Self {
        let random = RandomState::new();
        Seed {
            shared: foldhash::SharedSeed::from_u64(random.hash_one(0x6d63_702d_7761_7264_u64)),
            per_parse: random.hash_one(0x6b65_7973_u64),
        }
    }

    /// The hash of key `key` of object `serial`: the key's keyed hash, told apart per object
    /// by an odd multiple of the serial (a bijection, so one key's hashes in two objects
    /// differ; two keys' hashes are as far apart as the keyed hash makes them).
    fn hash(&self, serial: u64, key: &str) -> u64 {
        let mut h = foldhash::fast::FoldHasher::with_seed(self.per_parse, &self.shared);
        h.write(key.as_bytes());
        h.finish() ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// One object's keys: where they start in [`Scratch::stack`] and [`Scratch::unescaped`].
/// Rejects a repeated key in time linear in the object's keys.
struct ObjectKeys {
    start: usize,
    unescaped: usize,
    serial: u64,
    indexed: bool,
}

impl ObjectKeys {
    // `open`, `next` and `close` run for every object: inlined into the visitors, an empty
    // object costs a few instructions.
    #[inline]
    fn open(cx: &mut Cx<'_>) -> Self {
        let keys = &mut cx.keys;
        keys.objects += 1;
        ObjectKeys {
            start: keys.scratch.stack.len(),
            unescaped: keys.scratch.unescaped.len(),
            serial: keys.objects,
            indexed: false,
        }
    }

    /// Reads the next key of the object (`None` at its end) and records it, refusing a repeat.
    #[inline(always)]
    fn next<'de, A: MapAccess<'de>>(&mut self, map: &mut A, cx: &mut Cx<'de>) -> Result<Option<KeyAt>, A::Error> {
        let Some(at) = map.next_key_seed(KeySeed(&mut cx.keys))? else { return Ok(None) };
        let keys = &cx.keys;
        let mine = &keys.scratch.stack[self.start..];
        if mine.len() < INLINE_KEYS {
            // Text only for keys of the same length (most objects have one key or none).
            if mine.iter().any(|k| k.len() == at.len() && same(keys.text(*k), keys.text(at))) {
                let key = keys.text(at).to_owned();
                return Err(fail(cx, JsonRpcError::DuplicateKey(key)));
            }
        } else {
            self.insert_indexed(at, cx)?;
        }
        cx.keys.scratch.stack.push(at);
        Ok(Some(at))
    }

    /// A key past the inline ones (kept out of line: most objects never get here).
    #[inline(never)]
    fn insert_indexed<E: de::Error>(&mut self, at: KeyAt, cx: &mut Cx<'_>) -> Result<(), E> {
        let Keys { body, scratch: Scratch { stack, index, unescaped }, seed, indexed, .. } = &mut cx.keys;
        let seed = seed.get_or_insert_with(Seed::new);
        let text = |k: KeyAt| text_at(body, unescaped, k);
        if !self.indexed {
            self.indexed = true;
            *indexed += 1;
            for &k in &stack[self.start..] {
                index.insert(seed.hash(self.serial, text(k)));
            }
        }
        let key = text(at);
        if index.insert(seed.hash(self.serial, key)) {
            return Ok(());
        }
        if stack[self.start..].iter().any(|&k| same(text(k), key)) {
            let key = key.to_owned();
            return Err(fail(cx, JsonRpcError::DuplicateKey(key)));
        }
        Ok(())
    }

    #[inline]
    fn close(self, cx: &mut Cx<'_>) {
        let keys = &mut cx.keys;
        keys.scratch.stack.truncate(self.start);
        if keys.scratch.unescaped.len() != self.unescaped {
            keys.scratch.unescaped.truncate(self.unescaped);
        }
        if self.indexed {
            keys.indexed -= 1;
            if keys.indexed == 0 {
                empty(&mut keys.scratch.index);
            }
        }
    }
}

/// Compares two keys' text (tests count the calls).
#[inline]
fn same(a: &str, b: &str) -> bool {
    #[cfg(test)]
    tests::COMPARISONS.with(|c| c.set(c.get() + 1));
    a == b
}

/// The index's hasher: a key's hash, already keyed, passed through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called (the index holds `u64`s); anything else still hashes all it is given.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// Reads a key where [`Keys`] can find it again: borrowed from the body when it has no
/// escapes, else unescaped into the shared buffer (no allocation per key).
struct KeySeed<'k, 'de>(&'k mut Keys<'de>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, 'de> {
    type Value = KeyAt;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyAt, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, 'de> {
    type Value = KeyAt;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyAt, E> {
        Ok(self.0.locate(v, true))
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyAt, E> {
        Ok(self.0.locate(v, false))
    }
}

/// A string value, or `Err(())` for any other JSON value (validated all the same).
struct MaybeStr<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for MaybeStr<'_, 'de> {
    type Value = Result<Cow<'de, str>, ()>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeStr<'_, 'de> {
    type Value = Result<Cow<'de, str>, ()>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Any::new(self.depth, self.max, self.failure).visit_map(map).map(|_| Err(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Any::new(self.depth, self.max, self.failure).visit_seq(seq).map(|_| Err(()))
    }
}

/// Validates any value: depth and duplicate keys, without building it.
struct Any<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'f, 'de> Any<'f, 'de> {
    fn new(depth: usize, max: usize, failure: Failure<'f, 'de>) -> Self {
        Any { depth, max, failure }
    }

    fn enter<E: de::Error>(&mut self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.max {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max)));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for Any<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Any<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        while seq.next_element_seed(Any::new(depth, self.max, self.failure))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut seen = ObjectKeys::open(self.failure);
        while seen.next(&mut map, self.failure)?.is_some() {
            map.next_value_seed(Any::new(depth, self.max, self.failure))?;
        }
        seen.close(self.failure);
        Ok(())
    }
}

/// The top level: one object or a batch array of objects.
struct TopSeed<'f, 'de> {
    max_depth: usize,
    max_batch: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = Body<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Body<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, 'de> {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC object or batch array")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body<'de>, A::Error> {
        MessageSeed { depth: 0, max: self.max_depth, failure: self.failure }.visit_map(map).map(Body::Single)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body<'de>, A::Error> {
        if self.max_depth < 2 {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max_depth)));
        }
        let mut out = Vec::new();
        while out.len() < self.max_batch {
            match seq.next_element_seed(MessageSeed { depth: 1, max: self.max_depth, failure: &mut *self.failure })? {
                Some(m) => out.push(m),
                None => return batch(out, self.failure),
            }
        }
        // One more element would be one too many: refuse where it starts, unread.
        match seq.next_element_seed(TooMany { max_batch: self.max_batch, failure: &mut *self.failure })? {
            Some(never) => match never {},
            None => batch(out, self.failure),
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Body<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("a message must be a JSON object")))
    }
}

/// A whole batch read: refused when it holds no message.
fn batch<'de, E: de::Error>(out: Vec<Message<'de>>, failure: Failure<'_, 'de>) -> Result<Body<'de>, E> {
    if out.is_empty() {
        return Err(fail(failure, JsonRpcError::EmptyBatch));
    }
    Ok(Body::Batch(out))
}

/// Batch element `max_batch + 1`: refused before any of it is read.
struct TooMany<'f, 'de> {
    max_batch: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for TooMany<'_, 'de> {
    type Value = std::convert::Infallible;
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<Self::Value, D::Error> {
        Err(fail(self.failure, JsonRpcError::TooManyMessages(self.max_batch)))
    }
}

/// One envelope object at `depth` (0 for a single message, 1 inside a batch).
struct MessageSeed<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, 'de> {
    type Value = Message<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Message<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_, 'de> {
    type Value = Message<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let depth = self.depth + 1;
        if depth > self.max {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max)));
        }
        let mut msg = Message::default();
        let mut seen = ObjectKeys::open(self.failure);
        let mut jsonrpc_ok = false;
        while let Some(at) = seen.next(&mut map, self.failure)? {
            let which = self.failure.classify(at, ENVELOPE_KEYS)?;
            match which {
                Some(0) => {
                    let v = map.next_value_seed(MaybeStr { depth, max: self.max, failure: self.failure })?;
                    jsonrpc_ok = matches!(v, Ok(ref s) if s == "2.0");
                }
                Some(1) => {
                    let raw: &'de RawValue = map.next_value()?;
                    match read_id(raw) {
                        Ok(()) => {}
                        Err(None) => {
                            return Err(fail(self.failure, JsonRpcError::Invalid("'id' must be a string or a number")));
                        }
                        Err(Some(e)) => return Err(fail(self.failure, JsonRpcError::Syntax(e.to_string()))),
                    }
                    msg.id = Some(raw);
                }
                Some(2) => {
                    let v = map.next_value_seed(MaybeStr { depth, max: self.max, failure: self.failure })?;
                    msg.method =
                        Some(v.map_err(|()| fail(self.failure, JsonRpcError::Invalid("'method' must be a string")))?);
                }
                Some(3) => {
                    msg.params = map.next_value_seed(ParamsSeed { depth, max: self.max, failure: self.failure })?;
                }
                Some(_) => {
                    msg.has_result_or_error = true;
                    map.next_value_seed(Any::new(depth, self.max, self.failure))?;
                }
                None => map.next_value_seed(Any::new(depth, self.max, self.failure))?,
            }
        }
        seen.close(self.failure);
        if !jsonrpc_ok {
            return Err(fail(self.failure, JsonRpcError::NotJsonRpc2));
        }
        match (&msg.method, msg.id.is_some(), msg.has_result_or_error) {
            (Some(_), _, true) => {
                Err(fail(self.failure, JsonRpcError::Invalid("a request cannot carry 'result' or 'error'")))
            }
            (None, true, true) | (Some(_), _, false) => Ok(msg),
            (None, false, _) => Err(fail(self.failure, JsonRpcError::Invalid("neither a request nor a response"))),
            (None, true, false) => {
                Err(fail(self.failure, JsonRpcError::Invalid("a response needs 'result' or 'error'")))
            }
        }
    }
}

/// `params`: an object (or array — JSON-RPC allows by-position params, which govern nothing).
struct ParamsSeed<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_, 'de> {
    type Value = Params<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Params<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_, 'de> {
    type Value = Params<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Params<'de>, A::Error> {
        Any::new(self.depth, self.max, self.failure).visit_seq(seq)?;
        Ok(Params::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
        let depth = self.depth + 1;
        if depth > self.max {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max)));
        }
        let mut p = Params::default();
        let mut seen = ObjectKeys::open(self.failure);
        while let Some(at) = seen.next(&mut map, self.failure)? {
            let which = self.failure.classify(at, PARAMS_KEYS)?;
            let str_seed = |failure| MaybeStr { depth, max: self.max, failure };
            match which {
                Some(0) => p.name = Some(map.next_value_seed(str_seed(&mut *self.failure))?),
                Some(1) => p.uri = Some(map.next_value_seed(str_seed(&mut *self.failure))?),
                Some(3) => {
                    p.meta_protocol_version =
                        map.next_value_seed(MetaSeed { depth, max: self.max, failure: self.failure })?;
                }
                Some(4) => {
                    p.has_task = true;
                    map.next_value_seed(Any::new(depth, self.max, self.failure))?;
                }
                Some(5) => {
                    p.reference = Some(map.next_value_seed(RefSeed { depth, max: self.max, failure: self.failure })?);
                }
                _ => map.next_value_seed(Any::new(depth, self.max, self.failure))?,
            }
        }
        seen.close(self.failure);
        Ok(p)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Params<'de>, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'params' must be an object or an array")))
    }
}

/// `params._meta`: picks out the protocol version, validates the rest.
struct MetaSeed<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for MetaSeed<'_, 'de> {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_, 'de> {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("_meta object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth + 1;
        if depth > self.max {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max)));
        }
        let mut out = None;
        let mut seen = ObjectKeys::open(self.failure);
        while let Some(at) = seen.next(&mut map, self.failure)? {
            let is_version = self.failure.keys.text(at) == META_PROTOCOL_VERSION;
            if is_version {
                let v = map.next_value_seed(MaybeStr { depth, max: self.max, failure: self.failure })?;
                out = Some(v.map_err(|()| {
                    fail(self.failure, JsonRpcError::Invalid("protocol version in _meta must be a string"))
                })?);
            } else {
                map.next_value_seed(Any::new(depth, self.max, self.failure))?;
            }
        }
        seen.close(self.failure);
        Ok(out)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Any::new(self.depth, self.max, self.failure).visit_seq(seq).map(|()| None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'_meta' must be an object")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'_meta' must be an object")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'_meta' must be an object")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'_meta' must be an object")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonRpcError::Invalid("'_meta' must be an object")))
    }
}

/// `completion/complete` `params.ref`.
struct RefSeed<'f, 'de> {
    depth: usize,
    max: usize,
    failure: Failure<'f, 'de>,
}

impl<'de> DeserializeSeed<'de> for RefSeed<'_, 'de> {
    type Value = Reference<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RefSeed<'_, 'de> {
    type Value = Reference<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ref object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth + 1;
        if depth > self.max {
            return Err(fail(self.failure, JsonRpcError::TooDeep(self.max)));
        }
        let mut out = Reference::default();
        let mut seen = ObjectKeys::open(self.failure);
        while let Some(at) = seen.next(&mut map, self.failure)? {
            let which = self.failure.classify(at, REF_KEYS)?;
            let slot = match which {
                Some(0) => &mut out.kind,
                Some(1) => &mut out.name,
                Some(2) => &mut out.uri,
                _ => {
                    map.next_value_seed(Any::new(depth, self.max, self.failure))?;
                    continue;
                }
            };
            let v = map.next_value_seed(MaybeStr { depth, max: self.max, failure: self.failure })?;
            *slot = Some(v.map_err(|()| fail(self.failure, JsonRpcError::Invalid("'ref' fields must be strings")))?);
        }
        seen.close(self.failure);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Keys compared by `ObjectKeys` on this thread.
        pub(super) static COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Parses `body` and returns the key comparisons it took.
    fn comparisons(body: &str) -> usize {
        COMPARISONS.with(|c| c.set(0));
        parse(body, 32, 100).expect("valid");
        COMPARISONS.with(std::cell::Cell::get)
    }

    fn one(body: &str) -> Message<'_> {
        match parse(body, 32, 100).expect("valid") {
            Body::Single(m) => m,
            Body::Batch(_) => panic!("expected a single message"),
        }
    }

    fn err(body: &str) -> JsonRpcError {
        parse(body, 8, 100).expect_err("must be rejected")
    }

    #[test]
    fn reads_a_tools_call() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}"#,
        );
        assert_eq!(m.id.map(|r| r.get()), Some("7"));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.params.name, Some(Ok(Cow::Borrowed("get_weather"))));
    }

    #[test]
    fn keeps_the_id_exactly_as_sent() {
        let m = one(r#"{"jsonrpc":"2.0","id":"a\"b","method":"ping"}"#);
        assert_eq!(m.id.map(|r| r.get()), Some(r#""a\"b""#));
        let m = one(r#"{"jsonrpc":"2.0","id":1.50,"method":"ping"}"#);
        assert_eq!(m.id.map(|r| r.get()), Some("1.50"));
        let m = one(r#"{"jsonrpc":"2.0","id":-1E300,"method":"ping"}"#);
        assert_eq!(m.id.map(|r| r.get()), Some("-1E300"));
    }

    #[test]
    fn refuses_an_id_out_of_range_as_any_other_number() {
        for id in ["1e999", "-1E400"] {
            let e = err(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            assert!(matches!(e, JsonRpcError::Syntax(_)), "{id}: {e:?}");
            assert_eq!(e.code(), -32700);
        }
    }

    #[test]
    fn escaped_keys_are_compared_after_unescaping() {
        let e = err(r#"{"jsonrpc":"2.0","id":1,"method":"ping","meth\u006fd":"tools/call"}"#);
        assert_eq!(e, JsonRpcError::DuplicateKey("method".into()));
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert!(matches!(err(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#), JsonRpcError::DuplicateKey(_)));
        assert!(matches!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#),
            JsonRpcError::DuplicateKey(_)
        ));
        assert!(matches!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#),
            JsonRpcError::DuplicateKey(_)
        ));
    }

    #[test]
    fn a_repeat_is_found_among_many_keys_wherever_it_falls() {
        // Past the keys kept inline, a repeat of an early key and of a late one.
        let keys: Vec<String> = (0..12).map(|i| format!("\"k{i}\":{i}")).collect();
        let args = |extra: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{{},{extra}}}}}}}"#,
                keys.join(",")
            )
        };
        for extra in [r#""k0":0"#, r#""k10":0"#, r#""k11":0"#] {
            assert_eq!(
                err(&args(extra)),
                JsonRpcError::DuplicateKey(extra[1..extra.find(':').unwrap_or(0) - 1].into())
            );
        }
        assert_eq!(one(&args(r#""k12":0"#)).method.as_deref(), Some("tools/call"), "twelve distinct keys pass");
    }

    #[test]
    fn rejects_case_variants_of_known_keys() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"b"}}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"tas\u{212A}\":{}}}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"param\u{17F}\":{}}",
        ] {
            assert!(matches!(parse(body, 8, 100), Err(JsonRpcError::CaseVariant(_))), "{body}");
        }
    }

    #[test]
    fn rejects_nesting_beyond_the_limit() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{}1{}}}}}"#,
            "[".repeat(10),
            "]".repeat(10)
        );
        assert_eq!(err(&deep), JsonRpcError::TooDeep(8));
        assert!(parse(&deep, 32, 100).is_ok());
    }

    #[test]
    fn requires_jsonrpc_2_0() {
        assert_eq!(err(r#"{"id":1,"method":"ping"}"#), JsonRpcError::NotJsonRpc2);
        assert_eq!(err(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), JsonRpcError::NotJsonRpc2);
        assert_eq!(err(r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#), JsonRpcError::NotJsonRpc2);
    }

    #[test]
    fn rejects_non_json_and_trailing_garbage() {
        assert_eq!(err("{").code(), -32700);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#).code(), -32700);
        assert_eq!(err(r#""just a string""#).code(), -32600);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#).code(), -32700);
    }

    #[test]
    fn rejects_bad_id_and_method_types() {
        assert!(matches!(err(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#), JsonRpcError::Invalid(_)));
        assert!(matches!(err(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#), JsonRpcError::Invalid(_)));
        assert!(matches!(err(r#"{"jsonrpc":"2.0","id":1,"method":5}"#), JsonRpcError::Invalid(_)));
    }

    #[test]
    fn batch_reading_stops_at_message_max_batch_plus_one() {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let batch = |n: usize, tail: &str| format!("[{}{tail}", vec![ping; n].join(","));
        let exact = batch(3, "]");
        let Ok(Body::Batch(msgs)) = parse(&exact, 8, 3) else { panic!("exactly max_batch must parse") };
        assert_eq!(msgs.len(), 3);
        assert_eq!(parse(&batch(4, "]"), 8, 3).err(), Some(JsonRpcError::TooManyMessages(3)));
        // Element 4 is not read: neither its syntax nor anything after it is looked at.
        assert_eq!(parse(&batch(3, ",{]"), 8, 3).err(), Some(JsonRpcError::TooManyMessages(3)));
        assert_eq!(parse(&batch(3, ",7 x"), 8, 3).err(), Some(JsonRpcError::TooManyMessages(3)));
        // Errors before it still count, and a trailing comma is not an element.
        assert!(matches!(parse(&batch(3, "}]"), 8, 3), Err(JsonRpcError::Syntax(_))));
        assert!(matches!(parse(&batch(3, ",]"), 8, 3), Err(JsonRpcError::Syntax(_))));
        assert_eq!(parse("[]", 8, 0).err(), Some(JsonRpcError::EmptyBatch));
        assert_eq!(parse(&batch(1, "]"), 8, 0).err(), Some(JsonRpcError::TooManyMessages(0)));
        assert_eq!(JsonRpcError::TooManyMessages(3).code(), -32600);
    }

    #[test]
    fn reads_batches_and_responses() {
        let b = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"s","result":{}}]"#, 8, 100)
            .expect("valid");
        let Body::Batch(msgs) = b else { panic!("batch expected") };
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].has_result_or_error && msgs[1].method.is_none());
        assert_eq!(err("[]"), JsonRpcError::EmptyBatch);
    }

    #[test]
    fn non_string_name_is_recorded_not_guessed() {
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["a"]}}"#);
        assert_eq!(m.params.name, Some(Err(())));
    }

    #[test]
    fn reads_meta_protocol_version_task_and_ref() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"task":{"ttl":1},"ref":{"type":"ref/prompt","name":"greet"}}}"#,
        );
        assert_eq!(m.params.meta_protocol_version.as_deref(), Some("2026-07-28"));
        assert!(m.params.has_task);
        let r = m.params.reference.expect("ref");
        assert_eq!((r.kind.as_deref(), r.name.as_deref()), (Some("ref/prompt"), Some("greet")));
    }

    #[test]
    fn distinct_keys_cost_a_bounded_number_of_comparisons_each() {
        // Issue 19: past the inline keys, each key was compared with every earlier one, so a
        // 1 MiB object of 65,536 keys took 5.5 s. Now each costs at most the inline keys
        // plus the (rare) equal-hash candidates of one lookup.
        for n in [16usize, 1024, 65_536] {
            let keys: Vec<String> = (0..n).map(|i| format!("\"{i:x}\":0")).collect();
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"arguments":{{{}}}}}}}"#,
                keys.join(",")
            );
            let compared = comparisons(&body);
            assert!(compared <= (INLINE_KEYS + 2) * n, "{compared} comparisons for {n} keys");
        }
    }

    #[test]
    fn a_repeat_past_thousands_of_keys_is_still_found() {
        let keys: Vec<String> = (0..5000).map(|i| format!("\"k{i}\":0")).collect();
        let body = |extra: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{{{},{extra}}}}}}}"#, keys.join(","))
        };
        assert_eq!(err32(&body(r#""k4321":1"#)), JsonRpcError::DuplicateKey("k4321".into()));
        assert_eq!(err32(&body(r#""k\u0030":1"#)), JsonRpcError::DuplicateKey("k0".into()), "after unescaping");
    }

    #[test]
    fn many_small_objects_cost_comparisons_in_proportion_to_their_keys() {
        let objects: Vec<String> = (0..20_000).map(|i| format!(r#"{{"a":{i},"b":[{{"c":1}}]}}"#)).collect();
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"list":[{}]}}}}"#, objects.join(","));
        // Each object compares its second key with its first: one comparison per object.
        assert!(comparisons(&body) <= 2 * objects.len() + 16);
    }

    #[test]
    fn nested_objects_past_the_inline_keys_keep_their_keys_apart() {
        // One index serves every object of a parse: the same keys in an outer and an inner
        // object (both past the inline keys) are neither repeats nor a reason to compare.
        let keys = |n: usize| (0..n).map(|i| format!("\"k{i}\":0")).collect::<Vec<_>>().join(",");
        let body = |inner: &str, after: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{{{},"in":{{{inner}}},"in2":{{{inner}}}{after}}}}}}}"#,
                keys(2000)
            )
        };
        let n = 3 * 2000;
        let compared = comparisons(&body(&keys(2000), ""));
        assert!(compared <= (INLINE_KEYS + 2) * n, "{compared} comparisons for {n} keys");
        let repeat_inside = format!(r#"{},"k1999":1"#, keys(2000));
        assert_eq!(err32(&body(&repeat_inside, "")), JsonRpcError::DuplicateKey("k1999".into()));
        assert_eq!(err32(&body(&keys(2000), r#","k17":1"#)), JsonRpcError::DuplicateKey("k17".into()));
        assert_eq!(err32(&body(&keys(2000), r#","in":1"#)), JsonRpcError::DuplicateKey("in".into()));
    }

    #[test]
    fn a_repeat_is_found_in_small_objects_after_a_large_one() {
        // The index is emptied after the large object (its room given up: see `empty`); the
        // objects after it, past the inline keys too, still find their repeats, escaped or not.
        let big = (0..5000).map(|i| format!("\"k{i}\":0")).collect::<Vec<_>>().join(",");
        let small = (0..9).map(|i| format!("\"\\u006b{i}\":0")).collect::<Vec<_>>().join(",");
        let body = |last: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"big":{{{big}}},"s1":{{{small}}},"s2":{{{small},{last}}}}}}}"#
            )
        };
        parse(&body(r#""k9":0"#), 32, 100).expect("distinct keys");
        assert_eq!(err32(&body(r#""k3":1"#)), JsonRpcError::DuplicateKey("k3".into()));
        assert_eq!(err32(&body(r#""\u006b8":1"#)), JsonRpcError::DuplicateKey("k8".into()));
    }

    #[test]
    fn escaped_keys_of_an_inner_object_leave_the_outer_ones_intact() {
        let body = |last: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"\u0061":0,"in":{{"\u0062":0,"\u0063":{{"\u0064":0}}}},{last}:1}}}}"#
            )
        };
        parse(&body(r#""b""#), 32, 100).expect("the inner keys are the inner object's");
        assert_eq!(err32(&body(r#""a""#)), JsonRpcError::DuplicateKey("a".into()));
        assert_eq!(err32(&body(r#""\u0061""#)), JsonRpcError::DuplicateKey("a".into()));
    }

    #[test]
    fn emptying_the_index_gives_up_a_room_far_larger_than_its_keys() {
        let mut index: HashSet<u64, BuildHasherDefault<Prehashed>> = HashSet::default();
        index.extend(0..100_000u64);
        index.clear();
        index.extend(0..9u64);
        empty(&mut index);
        assert!(index.is_empty());
        assert!(index.capacity() < 1000, "room for {} kept", index.capacity());
        index.extend(0..200u64);
        let room = index.capacity();
        empty(&mut index);
        assert_eq!((index.len(), index.capacity()), (0, room), "a room that fits is kept");
    }

    fn err32(body: &str) -> JsonRpcError {
        parse(body, 32, 100).expect_err("must be rejected")
    }
}
