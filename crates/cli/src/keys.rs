//! `berth keys` (access keys for people and CI) and `berth roles` (the roles runtimes act as),
//! clients of the native API under `/berth/v1`.

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::Context;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// `berth keys ...`
#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create an access key with a policy; its secret is printed once and never again.
    Create {
        /// IAM policy document (JSON) the key's requests are authorized against.
        #[arg(long)]
        policy: PathBuf,
        /// A label for the key (defaults to its id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Access keys (ids, names, status; never secrets).
    List,
    /// Revoke an access key: it signs nothing from now on.
    Revoke {
        /// The access key id.
        id: String,
    },
}

/// `berth roles ...`
#[derive(Subcommand)]
pub enum RolesCmd {
    /// Create or replace a role; runtimes whose roleArn names it act with these policies.
    Put {
        /// Role name, or the role's ARN (arn:aws:iam::ACCOUNT:role/NAME).
        name: String,
        /// IAM policy document (JSON); repeat for several.
        #[arg(long, required = true)]
        policy: Vec<PathBuf>,
    },
    /// Roles.
    List,
    /// One role with its policies.
    Get {
        /// Role name or ARN.
        name: String,
    },
    /// Delete a role; its runtimes fall back to the default role.
    Delete {
        /// Role name or ARN.
        name: String,
    },
}

fn read_policy(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("the policy file {} is not JSON", path.display()))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Runs `berth keys ...`.
pub async fn keys(cmd: KeysCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        KeysCmd::Create { policy, name } => {
            let mut body = json!({ "policy": read_policy(&policy)? });
            if let Some(n) = name {
                body["name"] = n.into();
            }
            let v = c.call("POST", "/berth/v1/keys", Some(&body)).await?;
            if args.json {
                print_json(&v);
            } else {
                println!(
                    "access key {} created ({})",
                    s(&v["accessKeyId"]),
                    s(&v["name"])
                );
                println!("the secret is shown only now; store it safely:");
                println!("export AWS_ACCESS_KEY_ID={}", s(&v["accessKeyId"]));
                println!("export AWS_SECRET_ACCESS_KEY={}", s(&v["secretAccessKey"]));
            }
        }
        KeysCmd::List => {
            let v = c.call("GET", "/berth/v1/keys", None).await?;
            if args.json {
                print_json(&v);
            } else {
                let rows = v["accessKeys"]
                    .as_array()
                    .map(|keys| {
                        keys.iter()
                            .map(|k| {
                                vec![
                                    s(&k["accessKeyId"]),
                                    s(&k["name"]),
                                    s(&k["status"]),
                                    s(&k["createdAt"]),
                                    s(&k["revokedAt"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(
                    &["ACCESS KEY ID", "NAME", "STATUS", "CREATED", "REVOKED"],
                    rows,
                );
            }
        }
        KeysCmd::Revoke { id } => {
            let v = c
                .call("DELETE", &format!("/berth/v1/keys/{}", seg(&id)), None)
                .await?;
            if args.json {
                print_json(&v);
            } else {
                println!("access key {} revoked", s(&v["accessKeyId"]));
            }
        }
    }
    Ok(())
}

/// Runs `berth roles ...`.
pub async fn roles(cmd: RolesCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let v = match cmd {
        RolesCmd::Put { name, policy } => {
            let policies = policy
                .iter()
                .map(|p| read_policy(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = json!({ "policies": policies });
            let v = c
                .call(
                    "PUT",
                    &format!("/berth/v1/roles/{}", seg(&name)),
                    Some(&body),
                )
                .await?;
            if !args.json {
                println!("role {} ({}) saved", s(&v["roleName"]), s(&v["roleArn"]));
                return Ok(());
            }
            v
        }
        RolesCmd::List => {
            let v = c.call("GET", "/berth/v1/roles", None).await?;
            if !args.json {
                let rows = v["roles"]
                    .as_array()
                    .map(|roles| {
                        roles
                            .iter()
                            .map(|r| {
                                vec![
                                    s(&r["roleName"]),
                                    s(&r["roleArn"]),
                                    r["policies"].as_array().map_or(0, Vec::len).to_string(),
                                    s(&r["updatedAt"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(&["NAME", "ARN", "POLICIES", "UPDATED"], rows);
                return Ok(());
            }
            v
        }
        RolesCmd::Get { name } => {
            c.call("GET", &format!("/berth/v1/roles/{}", seg(&name)), None)
                .await?
        }
        RolesCmd::Delete { name } => {
            let v = c
                .call("DELETE", &format!("/berth/v1/roles/{}", seg(&name)), None)
                .await?;
            if !args.json {
                println!("role {} deleted", s(&v["roleName"]));
                return Ok(());
            }
            v
        }
    };
    print_json(&v);
    Ok(())
}
