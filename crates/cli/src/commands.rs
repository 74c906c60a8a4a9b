//! Client commands: runtimes, versions, endpoints, credentials.

use crate::ClientArgs;
use crate::client::{Client, seg};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use std::path::PathBuf;

/// `berth runtimes ...`
#[derive(Subcommand)]
pub enum RuntimesCmd {
    /// List runtimes with their latest version.
    List,
    /// Show one runtime (latest version unless --version).
    Get {
        /// Runtime id or name.
        runtime: String,
        /// A specific version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Delete a runtime, or one of its versions.
    Delete {
        /// Runtime id or name.
        runtime: String,
        /// Delete only this version.
        #[arg(long)]
        version: Option<String>,
    },
}

/// `berth versions ...`
#[derive(Subcommand)]
pub enum VersionsCmd {
    /// List the versions of a runtime, newest first.
    List {
        /// Runtime id or name.
        runtime: String,
    },
}

/// `berth endpoints ...`
#[derive(Subcommand)]
pub enum EndpointsCmd {
    /// List the endpoints of a runtime.
    List {
        /// Runtime id or name.
        runtime: String,
    },
    /// Create a named endpoint pinned to a version (the latest if omitted).
    Create {
        /// Runtime id or name.
        runtime: String,
        /// Endpoint name.
        name: String,
        /// Version to pin.
        #[arg(long)]
        version: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Point an endpoint at another version.
    Update {
        /// Runtime id or name.
        runtime: String,
        /// Endpoint name.
        name: String,
        /// Version to serve.
        #[arg(long)]
        version: String,
    },
    /// Delete a named endpoint.
    Delete {
        /// Runtime id or name.
        runtime: String,
        /// Endpoint name.
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

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    outln!("{t}");
}

fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Walks every page of a list operation.
async fn all_pages(c: &Client, path: &str, key: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("{path}?maxResults=100&nextToken={}", seg(t)),
            None => format!("{path}?maxResults=100"),
        };
        let page = c.call("POST", &q, None).await?;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(out),
        }
    }
}

fn version_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|r| {
            vec![
                s(&r["agentRuntimeName"]),
                s(&r["agentRuntimeId"]),
                s(&r["agentRuntimeVersion"]),
                s(&r["status"]),
                s(&r["lastUpdatedAt"]),
            ]
        })
        .collect()
}

/// `berth runtimes`.
pub async fn runtimes(cmd: RuntimesCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        RuntimesCmd::List => {
            let items = all_pages(&c, "/runtimes/", "agentRuntimes").await?;
            if args.json {
                print_json(&json!(items));
            } else {
                table(
                    &["NAME", "ID", "LATEST", "STATUS", "UPDATED"],
                    version_rows(&items),
                );
            }
        }
        RuntimesCmd::Get { runtime, version } => {
            let id = c.runtime_id(&runtime).await?;
            let q = match version {
                Some(v) => format!("/runtimes/{}/?version={}", seg(&id), seg(&v)),
                None => format!("/runtimes/{}/", seg(&id)),
            };
            let r = c.call("GET", &q, None).await?;
            if args.json {
                print_json(&r);
            } else {
                let mut rows = vec![
                    vec!["name".into(), s(&r["agentRuntimeName"])],
                    vec!["id".into(), s(&r["agentRuntimeId"])],
                    vec!["arn".into(), s(&r["agentRuntimeArn"])],
                    vec!["version".into(), s(&r["agentRuntimeVersion"])],
                    vec!["status".into(), s(&r["status"])],
                    vec!["created".into(), s(&r["createdAt"])],
                    vec!["updated".into(), s(&r["lastUpdatedAt"])],
                ];
                if let Some(f) = r.get("failureReason") {
                    rows.push(vec!["failure".into(), s(f)]);
                }
                if let Some(code) = r["agentRuntimeArtifact"].get("codeConfiguration") {
                    rows.push(vec![
                        "code".into(),
                        format!(
                            "s3://{}/{} ({})",
                            s(&code["code"]["s3"]["bucket"]),
                            s(&code["code"]["s3"]["prefix"]),
                            s(&code["runtime"])
                        ),
                    ]);
                }
                // As configured: a `berth-secret:NAME` reference is shown, never the value.
                for (k, v) in r["environmentVariables"].as_object().into_iter().flatten() {
                    rows.push(vec![format!("env {k}"), s(v)]);
                }
                table(&["FIELD", "VALUE"], rows);
            }
        }
        RuntimesCmd::Delete { runtime, version } => {
            let id = c.runtime_id(&runtime).await?;
            let q = match &version {
                Some(v) => format!("/runtimes/{}/?version={}", seg(&id), seg(v)),
                None => format!("/runtimes/{}/", seg(&id)),
            };
            let r = c.call("DELETE", &q, None).await?;
            if args.json {
                print_json(&r);
            } else {
                match version {
                    Some(v) => outln!("deleting version {v} of {id}"),
                    None => outln!("deleting {id}"),
                }
            }
        }
    }
    Ok(())
}

/// `berth versions`.
pub async fn versions(cmd: VersionsCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let VersionsCmd::List { runtime } = cmd;
    let id = c.runtime_id(&runtime).await?;
    let items = all_pages(
        &c,
        &format!("/runtimes/{}/versions/", seg(&id)),
        "agentRuntimes",
    )
    .await?;
    if args.json {
        print_json(&json!(items));
    } else {
        table(
            &["NAME", "ID", "VERSION", "STATUS", "UPDATED"],
            version_rows(&items),
        );
    }
    Ok(())
}

/// `berth endpoints`.
pub async fn endpoints(cmd: EndpointsCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let out = match cmd {
        EndpointsCmd::List { runtime } => {
            let id = c.runtime_id(&runtime).await?;
            let items = all_pages(
                &c,
                &format!("/runtimes/{}/runtime-endpoints/", seg(&id)),
                "runtimeEndpoints",
            )
            .await?;
            if args.json {
                print_json(&json!(items));
            } else {
                let rows = items
                    .iter()
                    .map(|e| {
                        vec![
                            s(&e["name"]),
                            s(&e["liveVersion"]),
                            s(&e["targetVersion"]),
                            s(&e["status"]),
                            s(&e["lastUpdatedAt"]),
                        ]
                    })
                    .collect();
                table(&["NAME", "LIVE", "TARGET", "STATUS", "UPDATED"], rows);
            }
            return Ok(());
        }
        EndpointsCmd::Create {
            runtime,
            name,
            version,
            description,
        } => {
            let id = c.runtime_id(&runtime).await?;
            let mut body = json!({ "name": name });
            if let Some(v) = version {
                body["agentRuntimeVersion"] = v.into();
            }
            if let Some(d) = description {
                body["description"] = d.into();
            }
            c.call(
                "PUT",
                &format!("/runtimes/{}/runtime-endpoints/", seg(&id)),
                Some(&body),
            )
            .await?
        }
        EndpointsCmd::Update {
            runtime,
            name,
            version,
        } => {
            let id = c.runtime_id(&runtime).await?;
            let body = json!({ "agentRuntimeVersion": version });
            c.call(
                "PUT",
                &format!("/runtimes/{}/runtime-endpoints/{}/", seg(&id), seg(&name)),
                Some(&body),
            )
            .await?
        }
        EndpointsCmd::Delete { runtime, name } => {
            let id = c.runtime_id(&runtime).await?;
            c.call(
                "DELETE",
                &format!("/runtimes/{}/runtime-endpoints/{}/", seg(&id), seg(&name)),
                None,
            )
            .await?
        }
    };
    if args.json {
        print_json(&out);
    } else {
        let rows = out
            .as_object()
            .map(|o| o.iter().map(|(k, v)| vec![k.clone(), s(v)]).collect())
            .unwrap_or_default();
        table(&["FIELD", "VALUE"], rows);
    }
    Ok(())
}

/// `berth credentials`.
pub fn credentials(
    export: bool,
    data_dir: Option<PathBuf>,
    endpoint_url: &str,
    region: &str,
) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(crate::serve::default_data_dir);
    let c = crate::serve::existing_root_credentials(&dir)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no root credentials in {}: start `berth serve` once first",
            dir.display()
        )
    })?;
    if export {
        outln!("export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE={endpoint_url}");
        outln!("export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL={endpoint_url}");
        outln!("export AWS_ENDPOINT_URL_S3={endpoint_url}");
        outln!("export AWS_ENDPOINT_URL_CLOUDWATCH_LOGS={endpoint_url}");
        // boto3 and the AgentCore SDK (`MemoryClient()`) need a region to build a client.
        outln!("export AWS_REGION={region}");
        outln!("export AWS_DEFAULT_REGION={region}");
        outln!("export AWS_ACCESS_KEY_ID={}", c.access_key_id);
        outln!("export AWS_SECRET_ACCESS_KEY={}", c.secret_access_key);
    } else {
        outln!("access key id:     {}", c.access_key_id);
        outln!("secret access key: {}", c.secret_access_key);
    }
    Ok(())
}
