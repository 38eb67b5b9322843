//! warden-core: the part of mcp-warden that decides, with no I/O.
//!
//! [`policy`] turns parsed policy text into a compiled, validated [`policy::Policy`] and
//! decides with it; [`mcp`] inspects a JSON-RPC body fail-closed; [`decision`] is the
//! contract the check writes and the list filter and access log read; [`listfilter`]
//! rewrites list answers to what a user may see. No async runtime, network or file system
//! is reachable from here: the crate does not depend on tokio, tonic, h2 or reqwest, and
//! `clippy.toml` forbids `std::fs` and `std::net`. Files are read by the service through
//! [`policy::Files`].

pub mod bounds;
pub mod decision;
pub mod headers;
pub mod listfilter;
pub mod located;
pub mod mcp;
pub mod policy;
