//! `mcp-warden client-config`: an MCP client's configuration for one app behind Envoy.
//!
//! Streamable HTTP to Envoy's URL with `Authorization: Bearer …` taken from an environment
//! variable, in each client's documented file shape: Cursor's `mcp.json` (`mcpServers`,
//! `url`, `headers`, `${env:NAME}`), VS Code's `mcp.json` (`servers`, `type: http`, `url`,
//! `headers`, `${env:NAME}`), Claude Desktop's `claude_desktop_config.json` (`mcpServers`
//! with a `command`: Claude Desktop's config file has no remote servers with headers, so
//! the `mcp-remote` bridge is run with `--header`, which expands `${NAME}` itself), and a
//! plain JSON for scripts and SDKs. The key itself is never read or printed.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{ConfigArg, Loaded, Output, ToolError, fail};

/// The clients a configuration can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// Claude Desktop (`claude_desktop_config.json`, through `npx mcp-remote`).
    Claude,
    /// Cursor (`~/.cursor/mcp.json` or `.cursor/mcp.json`).
    Cursor,
    /// VS Code (`.vscode/mcp.json` or the user profile's `mcp.json`).
    Vscode,
    /// A plain description: name, transport, URL and headers (for scripts and SDK clients).
    Json,
}

/// `client-config`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The app (policy `app` name) the client will use.
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// The URL clients reach the app at through Envoy, such as `https://mcp.example.com/mcp`.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The client to print the configuration for.
    #[arg(long, value_enum)]
    pub client: Client,
    /// The environment variable holding the API key (or identity-provider token).
    #[arg(long, value_name = "NAME", default_value = "MCP_WARDEN_KEY")]
    pub env: String,
    /// The server's name in the client (default: the app's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Runs `client-config`.
pub fn run(args: &ClientConfigArgs) -> ExitCode {
    let loaded = match Loaded::load(args.config.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(Output::Text, &e),
    };
    if let Err(e) = loaded.app(&args.app) {
        return fail(Output::Text, &e);
    }
    match render(args.client, args.name.as_deref().unwrap_or(&args.app), &args.url, &args.env) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => fail(Output::Text, &e),
    }
}

/// The configuration document for `client`.
pub fn render(client: Client, name: &str, url: &str, env: &str) -> Result<Value, ToolError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(char::is_whitespace) {
        return Err(ToolError::Url(url.to_owned()));
    }
    let valid_env =
        env.bytes().enumerate().all(|(i, b)| b == b'_' || b.is_ascii_uppercase() || (i > 0 && b.is_ascii_digit()));
    if env.is_empty() || !valid_env {
        return Err(ToolError::Env(env.to_owned()));
    }
    Ok(match client {
        Client::Cursor => json!({
            "mcpServers": { name: {
                "url": url,
                "headers": { "Authorization": format!("Bearer ${{env:{env}}}") },
            }}
        }),
        Client::Vscode => json!({
            "servers": { name: {
                "type": "http",
                "url": url,
                "headers": { "Authorization": format!("Bearer ${{env:{env}}}") },
            }}
        }),
        Client::Claude => {
            let mut args = vec!["-y".to_owned(), "mcp-remote".to_owned(), url.to_owned()];
            if url.starts_with("http://") && !is_loopback(url) {
                args.push("--allow-http".to_owned());
            }
            args.extend(["--header".to_owned(), format!("Authorization: Bearer ${{{env}}}")]);
            json!({
                "mcpServers": { name: {
                    "command": "npx",
                    "args": args,
                    "env": { env: format!("<your key: set {env} here>") },
                }}
            })
        }
        Client::Json => json!({
            "name": name,
            "transport": "streamable-http",
            "url": url,
            "headers": { "Authorization": format!("Bearer ${{{env}}}") },
        }),
    })
}

/// Whether an http URL's host is loopback (mcp-remote accepts plain http only there).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_referenced_never_embedded() {
        for c in [Client::Claude, Client::Cursor, Client::Vscode, Client::Json] {
            let text = render(c, "demo", "https://mcp.example.com/mcp", "MY_KEY").expect("renders").to_string();
            assert!(text.contains("MY_KEY"), "{text}");
        }
    }

    #[test]
    fn bad_urls_and_variable_names_are_refused() {
        assert!(render(Client::Json, "d", "ftp://x", "K").is_err());
        assert!(render(Client::Json, "d", "https://x/mcp", "1K").is_err());
        assert!(render(Client::Json, "d", "https://x/mcp", "k-ey").is_err());
    }

    #[test]
    fn mcp_remote_gets_allow_http_only_off_loopback() {
        let args =
            |url: &str| render(Client::Claude, "d", url, "K").expect("renders")["mcpServers"]["d"]["args"].clone();
        assert!(!args("http://127.0.0.1:10000/mcp").to_string().contains("--allow-http"));
        assert!(args("http://mcp.internal:10000/mcp").to_string().contains("--allow-http"));
        assert!(!args("https://mcp.example.com/mcp").to_string().contains("--allow-http"));
    }
}
