//! mcp-warden: identity-aware, tool-level access control for MCP servers behind Envoy.
//!
//! Envoy asks [`authz`] about every request (ext_authz gRPC); mcp-warden authenticates the
//! caller ([`authn`]), inspects the MCP JSON-RPC body ([`mcp`]), decides with the compiled
//! [`policy`], and on allow replaces `Authorization` with an ID token minted by [`token`]
//! and published through [`http`]'s OIDC discovery and JWKS.

pub mod mcp;
pub mod policy;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod config;
pub mod keys;
pub mod reply;
pub mod token;
pub mod reflection;
pub mod cli;
pub mod http;
pub mod server;
