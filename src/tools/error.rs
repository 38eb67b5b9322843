//! Why an offline tool (`explain`, `ls`, `test`, `client-config`) could not answer: each
//! error names the file, flag, app or test case at fault. Printed by [`super::fail`].

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::extproc::sse::SseError;
use crate::identity::idp::{JwtConfigError, UnknownRoles};
use warden_core::listfilter::FilterError;
use warden_core::policy::PolicyErrors;

/// A usage error of an offline tool.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a JSON object of claims: {source}", path.display())]
    Claims { path: PathBuf, source: serde_json::Error },
    #[error("--trait '{0}': expected NAME=VALUE")]
    Trait(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyErrors),
    #[error("{at}: authentication.jwt: {source}")]
    Jwt { at: String, source: JwtConfigError },
    #[error("{at}: authentication.jwt: {source}")]
    MappedRoles { at: String, source: UnknownRoles },
    #[error("unknown app '{0}'")]
    UnknownApp(String),
    /// An identity the policy cannot answer for: an unknown user or role, claims without a
    /// `jwt` config.
    #[error("{0}")]
    Identity(String),
    #[error("name a request: --tool, --prompt, --resource, --method or --body")]
    NoRequest,
    #[error("--arguments: {0}")]
    Arguments(serde_json::Error),
    #[error("--url '{0}': expected an http(s) URL")]
    Url(String),
    #[error("--env '{0}': expected an environment variable name (A-Z, 0-9, _)")]
    Env(String),
    #[error(transparent)]
    Answer(#[from] SseError),
    #[error("{}: no {kind} answer found", path.display())]
    NoAnswer { path: PathBuf, kind: &'static str },
    #[error("the filtered answer has no list")]
    FilteredNoList,
    #[error("the list filter refuses this answer ({0}): a client would get an error")]
    FilterRefused(FilterError),
    #[error("name exactly one identity: user, roles (with traits) or claims")]
    CaseIdentity,
    #[error("name exactly one request: tool, prompt, resource, method (with params) or body")]
    CaseRequest,
    #[error("expects unknown role '{0}'")]
    CaseRole(String),
    #[error("no test files found (directories are searched for *_test.yaml)")]
    NoTestFiles,
    #[error("{}: {source}", path.display())]
    TestFile { path: PathBuf, source: yaml_serde::Error },
    /// The test file's config failed to load (the message of that failure, shared by every
    /// file naming the same config).
    #[error("{}: config: {message}", path.display())]
    TestConfig { path: PathBuf, message: String },
    #[error("{}: no tests", .0.display())]
    NoTests(PathBuf),
}
