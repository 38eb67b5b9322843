//! A request's HTTP headers as Envoy sent them, borrowed from the check request.
//!
//! Envoy sends either a map whose repeated headers are already joined with `,`
//! (`headers`), or, with `encode_raw_headers: true`, every header line as it came
//! (`header_map`). Both arrive here as the same view, with repeated names joined the way the
//! map form joins them, so no decision depends on which form Envoy was configured to send.
//! Names are lower-case in both forms (Envoy's HTTP codecs lower-case them).

use std::borrow::Cow;

/// Header name → value, in arrival order; a name appears once.
#[derive(Debug, Default, Clone)]
pub struct Headers<'a> {
    entries: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Headers<'a> {
    /// The view over `(name, value)` pairs; a repeated name's values are joined with `,`.
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut headers = Headers { entries: Vec::with_capacity(16) };
        for (name, value) in pairs {
            headers.push(name, value);
        }
        headers
    }

    /// Adds one header line; a name already present gets `,value` appended.
    pub fn push(&mut self, name: &'a str, value: &'a str) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                let v = joined.to_mut();
                v.push(',');
                v.push_str(value);
            }
            None => self.entries.push((name, Cow::Borrowed(value))),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| *n == name).map(|(_, v)| &**v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &str)> {
        self.entries.iter().map(|(n, v)| (*n, &**v))
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        Headers::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_header_is_joined_like_envoys_map_form() {
        let h = Headers::new([("authorization", "Bearer a"), ("accept", "x"), ("authorization", "Bearer b")]);
        assert_eq!(h.get("authorization"), Some("Bearer a,Bearer b"));
        assert_eq!(h.get("accept"), Some("x"));
        assert_eq!(h.iter().count(), 2);
    }

    #[test]
    fn lookups_are_exact_on_lower_case_names() {
        let h: Headers<'_> = [("x-api-key", "k")].into_iter().collect();
        assert!(h.contains_key("x-api-key"));
        assert_eq!(h.get("X-Api-Key"), None);
        assert_eq!(h.get("x-api-ke"), None);
    }
}
