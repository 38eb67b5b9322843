//! A request's HTTP headers as Envoy sent them, borrowed from the check request.
//!
//! Envoy sends either a map whose repeated headers are already joined with `,`
//! (`headers`), or, with `encode_raw_headers: true`, every header line as it came
//! (`header_map`). Both arrive here as the same view, with repeated names joined the way the
//! map form joins them, so no decision depends on which form Envoy was configured to send.
//! Names are lower-case in both forms (Envoy's HTTP codecs lower-case them).
//!
//! Cost: linear in the header lines. A lookup or an added line compares at most
//! 16 (`SCANNED`) names while there are that few distinct names; past that, names are indexed
//! in a hash map (std's SipHash, keyed at random per process, so header names cannot be
//! chosen to collide), and each lookup or line costs one hash of the name. A repeated
//! name's joined value grows by appending (amortized linear in its lines).

use std::borrow::Cow;
use std::collections::HashMap;

/// Header name → value, in arrival order; a name appears once.
#[derive(Debug, Default, Clone)]
pub struct Headers<'a> {
    entries: Vec<(&'a str, Cow<'a, str>)>,
    /// One bit per name present (see `bit`): a name whose bit is clear is absent without a
    /// scan, which is most lookups (credentials and overrides a request rarely carries) and
    /// nearly every line added.
    names: u64,
    /// Name → its place in `entries`, once there are more than [`SCANNED`] names.
    index: Option<HashMap<&'a str, usize>>,
}

/// Distinct names looked up by a scan; more are indexed.
const SCANNED: usize = 16;

/// A name's bit in `Headers::names`, from its length and last byte.
fn bit(name: &str) -> u64 {
    let last = name.as_bytes().last().copied().unwrap_or(0);
    1 << ((name.len().wrapping_mul(31) ^ usize::from(last)) & 63)
}

impl<'a> Headers<'a> {
    /// The view over `(name, value)` pairs; a repeated name's values are joined with `,`.
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut headers = Headers { entries: Vec::with_capacity(SCANNED), names: 0, index: None };
        for (name, value) in pairs {
            headers.push(name, value);
        }
        headers
    }

    /// Adds one header line; a name already present gets `,value` appended.
    pub fn push(&mut self, name: &'a str, value: &'a str) {
        if let Some(i) = self.position(name) {
            let v = self.entries[i].1.to_mut();
            v.push(',');
            v.push_str(value);
            return;
        }
        self.names |= bit(name);
        self.entries.push((name, Cow::Borrowed(value)));
        match &mut self.index {
            Some(index) => {
                index.insert(name, self.entries.len() - 1);
            }
            None if self.entries.len() > SCANNED => {
                self.index = Some(self.entries.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect());
            }
            None => {}
        }
    }

    /// Where `name` is in `entries`: a bit test, then a scan of at most [`SCANNED`] names or
    /// one hash lookup.
    #[inline]
    fn position(&self, name: &str) -> Option<usize> {
        if self.names & bit(name) == 0 {
            return None;
        }
        self.find(name)
    }

    #[inline]
    fn find(&self, name: &str) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(n, _)| same(n, name)),
            Some(index) => index.get(name).copied(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| &*self.entries[i].1)
    }

    /// True when `name` came as more than one line (its values were joined with `,`): a
    /// reader that takes the first or the last line would see something else.
    pub fn is_joined(&self, name: &str) -> bool {
        // Only `push` joining lines makes an owned value.
        self.position(name).is_some_and(|i| matches!(self.entries[i].1, Cow::Owned(_)))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &str)> {
        self.entries.iter().map(|(n, v)| (*n, &**v))
    }
}

/// Two names compared by a scan (tests count them).
#[inline]
fn same(a: &str, b: &str) -> bool {
    #[cfg(test)]
    tests::COMPARISONS.with(|c| c.set(c.get() + 1));
    a == b
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        Headers::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Names compared by scans on this thread.
        pub(super) static COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn a_repeated_header_is_joined_like_envoys_map_form() {
        let h = Headers::new([("authorization", "Bearer a"), ("accept", "x"), ("authorization", "Bearer b")]);
        assert_eq!(h.get("authorization"), Some("Bearer a,Bearer b"));
        assert_eq!(h.get("accept"), Some("x"));
        assert_eq!(h.iter().count(), 2);
        assert!(h.is_joined("authorization"));
        assert!(!h.is_joined("accept"), "one line");
        assert!(!h.is_joined("mcp-name"), "absent");
        let one = Headers::new([("mcp-name", "a,b")]);
        assert!(!one.is_joined("mcp-name"), "a comma in one line is not a join");
    }

    #[test]
    fn lookups_are_exact_on_lower_case_names() {
        let h: Headers<'_> = [("x-api-key", "k")].into_iter().collect();
        assert!(h.contains_key("x-api-key"));
        assert_eq!(h.get("X-Api-Key"), None);
        assert_eq!(h.get("x-api-ke"), None);
    }

    #[test]
    fn names_sharing_a_bit_are_still_told_apart() {
        // Same length and last byte: the same bit, so lookups and joins must compare names.
        assert_eq!(bit("x-a"), bit("y-a"));
        let h = Headers::new([("x-a", "1"), ("y-a", "2"), ("x-a", "3")]);
        assert_eq!((h.get("x-a"), h.get("y-a"), h.get("z-a")), (Some("1,3"), Some("2"), None));
        assert_eq!(h.iter().count(), 2);
    }

    #[test]
    fn thousands_of_header_lines_cost_a_bounded_number_of_comparisons_each() {
        // Issue 19: a scan per line and per lookup over every name seen was O(n²).
        let names: Vec<String> = (0..20_000).map(|i| format!("x-h{i}")).collect();
        COMPARISONS.with(|c| c.set(0));
        let mut h = Headers::new(names.iter().map(|n| (n.as_str(), "v")));
        for n in &names {
            h.push(n, "w");
            assert!(h.is_joined(n) && h.get(n) == Some("v,w"));
        }
        assert_eq!((h.get("x-h20000"), h.iter().count()), (None, names.len()));
        let compared = COMPARISONS.with(std::cell::Cell::get);
        assert!(compared <= SCANNED * SCANNED, "{compared} name comparisons for {} lines", names.len());
    }
}
