//! `berth secrets`: named values runtimes reference from their environment variables
//! (`berth-secret:NAME`), a client of the native API under `/berth/v1/secrets`. Values go in and
//! never come back out: list and put answer names, versions and times.

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::{Context, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use std::io::{IsTerminal, Read};

/// `berth secrets ...`
#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Create a secret or replace its value (each put bumps its version). The value is read from
    /// standard input (`berth secrets put NAME < file`, or typed and ended with Ctrl-D), which
    /// keeps it out of shell history; one trailing newline is dropped.
    Put {
        /// 1-128 characters of A-Z a-z 0-9 / _ . -
        name: String,
        /// The value itself (it lands in shell history: prefer standard input).
        #[arg(long)]
        value: Option<String>,
    },
    /// Secrets (names, versions, times; never values).
    List {
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a secret; sandboxes started after it fail to start if their runtime references it.
    Delete {
        /// The secret's name.
        name: String,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// The value from standard input: all of it, less one trailing newline (what `echo` and an
/// editor add).
fn value_from_stdin() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("enter the value, then Ctrl-D:");
    }
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .context("reading the value from standard input (it must be UTF-8)")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no value on standard input: pipe it in (`berth secrets put NAME < file`)");
    }
    Ok(value)
}

/// Runs `berth secrets ...`.
pub async fn secrets(cmd: SecretsCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        SecretsCmd::Put { name, value } => {
            let value = match value {
                Some(v) => v,
                None => value_from_stdin()?,
            };
            let v = c
                .call(
                    "PUT",
                    &format!("/berth/v1/secrets/{}", seg(&name)),
                    Some(&json!({ "value": value })),
                )
                .await?;
            if args.json {
                print_json(&v);
            } else {
                outln!(
                    "secret {} saved (version {})",
                    s(&v["name"]),
                    s(&v["version"])
                );
            }
        }
        SecretsCmd::List { prefix } => {
            let path = if prefix.is_empty() {
                "/berth/v1/secrets".to_owned()
            } else {
                format!("/berth/v1/secrets?prefix={}", seg(&prefix))
            };
            let v = c.call("GET", &path, None).await?;
            if args.json {
                print_json(&v);
            } else {
                let mut t = Table::new();
                t.load_preset(UTF8_BORDERS_ONLY);
                t.set_header(["NAME", "VERSION", "CREATED", "UPDATED"]);
                for m in v["secrets"].as_array().into_iter().flatten() {
                    t.add_row([
                        s(&m["name"]),
                        s(&m["version"]),
                        s(&m["createdAt"]),
                        s(&m["updatedAt"]),
                    ]);
                }
                outln!("{t}");
            }
        }
        SecretsCmd::Delete { name } => {
            c.call("DELETE", &format!("/berth/v1/secrets/{}", seg(&name)), None)
                .await?;
            if args.json {
                print_json(&json!({ "name": name, "deleted": true }));
            } else {
                outln!("secret {name} deleted");
            }
        }
    }
    Ok(())
}
