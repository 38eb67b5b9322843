//! Operator tools: `explain`, `test`, `ls`, `client-config` and `pin`.
//!
//! Owns what these commands share: loading a service config and its policy (`--config`, or
//! `MCP_WARDEN_CONFIG`, else the embedded demo default, as `serve` does), naming an identity
//! (a policy user, roles, or a JWT's claims mapped as the live service maps them), and
//! printing text or JSON with the exit codes the commands document. Nothing here decides:
//! decisions come from [`warden_core::mcp`]'s inspection and [`warden_core::policy::engine`], called as
//! the live check calls them. Never prints a secret, an API-key hash or a token.

pub mod client_config;
mod error;
pub mod explain;
pub mod ls;
pub mod pin;
pub mod policy_test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use error::ToolError;

use crate::config::Config;
use crate::identity::authn::AuthError;
use crate::identity::identities::UserRef;
use crate::identity::idp::Verifier;
use crate::identity::idp::jwks::KeyCache;
use crate::state::Snapshot;
use warden_core::policy::{App, Policy, Traits};

/// Exit code of a command that could not do what it was asked (bad usage, a config that does
/// not load, an unknown user, app or role); 0 and 1 are the commands' own answers.
pub const EXIT_USAGE: u8 = 2;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// `--config`, the same for every command that reads one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArg {
    /// Service config (YAML) whose policy and `authentication.jwt` are used; without it, the
    /// embedded demo default (as `serve` uses).
    #[arg(long, env = "MCP_WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Who is asking, as given on the command line: exactly one of `--user`, `--roles`, `--claims`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// A user defined in the policy.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["roles", "claims"], conflicts_with_all = ["roles", "claims"])]
    pub user: Option<String>,
    /// A JSON file holding a JWT's claims: the username, traits and roles are mapped from it
    /// as the live service maps a verified token (`authentication.jwt` of the config).
    #[arg(long, value_name = "FILE", conflicts_with = "roles")]
    pub claims: Option<PathBuf>,
    /// An ad-hoc identity holding these roles (comma-separated).
    #[arg(long, value_name = "ROLE,...", value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// A trait of the `--roles` identity, for roles with `{{internal.NAME}}` templates
    /// (repeatable; one value each).
    #[arg(long = "trait", value_name = "NAME=VALUE", requires = "roles")]
    pub traits: Vec<String>,
}

/// An identity to evaluate.
#[derive(Debug, Clone)]
pub enum Identity {
    User(String),
    Roles(Vec<String>, Traits),
    Claims(Map<String, Value>),
}

impl IdentityArgs {
    /// The identity named, reading `--claims` (errors name the file or the bad `--trait`).
    pub fn identity(&self) -> Result<Identity, ToolError> {
        if let Some(user) = &self.user {
            return Ok(Identity::User(user.clone()));
        }
        if let Some(path) = &self.claims {
            let text =
                std::fs::read_to_string(path).map_err(|source| ToolError::Read { path: path.clone(), source })?;
            let claims: Map<String, Value> =
                serde_json::from_str(&text).map_err(|source| ToolError::Claims { path: path.clone(), source })?;
            return Ok(Identity::Claims(claims));
        }
        let mut traits = Traits::new();
        for t in &self.traits {
            let (name, value) = t.split_once('=').ok_or_else(|| ToolError::Trait(t.clone()))?;
            traits.entry(name.to_owned()).or_default().push(value.to_owned());
        }
        Ok(Identity::Roles(self.roles.clone().unwrap_or_default(), traits))
    }
}

/// Why an identity gave no user.
#[derive(Debug)]
pub enum Unresolved {
    /// Not a question the policy can answer: an unknown user or role, claims without a
    /// `jwt` config.
    Usage(String),
    /// The live service would refuse this caller at authentication (and why).
    Refused(AuthError, String),
}

impl Unresolved {
    pub fn message(self) -> String {
        match self {
            Unresolved::Usage(m) | Unresolved::Refused(_, m) => m,
        }
    }
}

/// A config, its policy (as one snapshot, so identity-provider users are compiled as the
/// live service compiles them) and the claims mapper when `authentication.jwt` is set.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub snapshot: Snapshot,
    verifier: Option<Verifier>,
}

impl Loaded {
    /// Loads `path` (or the embedded default) and validates it as `check` does.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ToolError> {
        let config = match path {
            Some(p) => Config::from_file(p)?,
            None => Config::embedded_default(),
        };
        let policy = crate::policy_files::load(&config.policy)?;
        let verifier = match &config.jwt {
            None => None,
            Some(jwt) => {
                let at = path.map_or_else(|| "(embedded default)".to_owned(), |p| p.display().to_string());
                crate::identity::idp::check_mapped_roles(jwt, &policy)
                    .map_err(|source| ToolError::MappedRoles { at: at.clone(), source })?;
                // Only the claims mapping is used: no key is fetched and no token verified. The
                // issuer only names the resource metadata, which is never served here.
                let issuer = config.issuer.as_deref().unwrap_or("http://127.0.0.1");
                let keys = Arc::new(KeyCache::default());
                Some(Verifier::new(jwt.clone(), keys, issuer).map_err(|source| ToolError::Jwt { at, source })?)
            }
        };
        Ok(Loaded { config, snapshot: Snapshot::new(policy, 0), verifier })
    }

    pub fn policy(&self) -> &Policy {
        &self.snapshot.policy
    }

    pub fn app(&self, name: &str) -> Result<&App, ToolError> {
        self.policy().app(name).ok_or_else(|| ToolError::UnknownApp(name.to_owned()))
    }

    /// The compiled user for an identity. A user or role the policy does not define is a
    /// usage error; claims the live service would refuse are a refusal (a denial there).
    pub fn user(&self, identity: &Identity) -> Result<UserRef<'_>, Unresolved> {
        match identity {
            Identity::User(name) => self
                .policy()
                .user(name)
                .map(UserRef::Static)
                .ok_or_else(|| Unresolved::Usage(format!("unknown user '{name}'"))),
            Identity::Roles(roles, traits) => {
                if roles.is_empty() {
                    return Err(Unresolved::Usage("no role named".to_owned()));
                }
                let name = format!("roles:{}", roles.join(","));
                let user = self
                    .policy()
                    .build_user(&name, roles, traits.clone())
                    .map_err(|e| Unresolved::Usage(e.to_string()))?;
                Ok(UserRef::Dynamic(Arc::new(user)))
            }
            Identity::Claims(claims) => {
                let verifier = self.verifier.as_ref().ok_or_else(|| {
                    Unresolved::Usage(
                        "claims need `authentication.jwt` in the config (its username claim and claims_to_roles)"
                            .to_owned(),
                    )
                })?;
                let id = verifier
                    .map_claims(claims)
                    .map_err(|r| Unresolved::Refused(AuthError::Token(r), format!("the claims name nobody: {r}")))?;
                let user = self.snapshot.dynamic_user(&id.username, &id.roles, id.traits).map_err(|e| {
                    Unresolved::Refused(AuthError::Unusable, format!("identity-provider user '{}': {e}", id.username))
                })?;
                Ok(UserRef::Dynamic(user))
            }
        }
    }
}

/// Prints a command's failure (on stderr, and as `{"error": …}` on stdout for JSON) and
/// returns [`EXIT_USAGE`].
pub fn fail(output: Output, message: &dyn std::fmt::Display) -> ExitCode {
    let message = message.to_string();
    eprintln!("mcp-warden: {message}");
    if output == Output::Json {
        println!("{}", serde_json::json!({ "error": message }));
    }
    ExitCode::from(EXIT_USAGE)
}

/// Prints a JSON value on one line.
pub fn print_json(value: &Value) {
    println!("{value}");
}
