//! mcp-warden: identity-aware, tool-level access control for MCP servers behind Envoy.
//!
//! Envoy asks [`authz`] about every request (ext_authz gRPC); mcp-warden authenticates the
//! caller ([`identity`]), inspects the MCP JSON-RPC body ([`warden_core::mcp`]), decides with
//! the compiled [`warden_core::policy`], and on allow replaces `Authorization` with an ID
//! token minted by [`token`] and published through [`http`]'s OIDC discovery and JWKS.

pub mod audit;
pub mod authz;
pub mod cli;
pub mod config;
pub mod extproc;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod keyring;
pub mod keys;
pub mod metrics;
pub mod pins;
pub mod policy_files;
pub mod preflight;
pub mod reload;
pub mod server;
pub mod state;
pub mod token;
pub mod tools;
