//! `berth exec`: `InvokeAgentRuntimeCommand` from the terminal. The command's stdout and stderr
//! are written to ours as the event stream delivers them; `berth` exits with the command's code.

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::{Context, bail};
use berth_api::eventstream::Decoder;
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;

/// `berth exec` arguments.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Runtime id, name or ARN.
    pub runtime: String,
    /// Session id (33 to 256 characters): the command runs in that session's sandbox, which is
    /// started if it is not live.
    #[arg(long)]
    pub session: String,
    /// Seconds before the command's process group is killed (1 to 3600) [default: 300].
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Endpoint name or version.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// The command and its arguments (after `--`), joined with spaces and run by `/bin/sh -c`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The command ran and exited with a code other than 0: `berth` exits with it.
#[derive(Debug, thiserror::Error)]
#[error("the command exited with {0}")]
pub struct ExitWith(pub i32);

/// Runs the command and streams its output.
pub async fn exec(a: ExecArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let id = if a.runtime.starts_with("arn:") {
        a.runtime.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        c.runtime_id(&a.runtime).await?
    };
    let mut path = format!("/runtimes/{}/commands", seg(&id));
    if let Some(q) = &a.qualifier {
        path.push_str(&format!("?qualifier={}", seg(q)));
    }
    let mut body = json!({ "command": a.command.join(" ") });
    if let Some(t) = a.timeout {
        body["timeout"] = json!(t);
    }
    let extra = [(
        "x-amzn-bedrock-agentcore-runtime-session-id".to_owned(),
        a.session.clone(),
    )];
    let resp = Client::success(c.send_with("POST", &path, Some(&body), &extra).await?).await?;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut decoder = Decoder::default();
    let mut stream = resp.bytes_stream();
    while let Some(bytes) = stream.next().await {
        decoder.push(&bytes.context("the response stream broke")?);
        while let Some(m) = decoder.next_message()? {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            if m.header(":message-type") == Some("exception") {
                bail!(
                    "{}: {}",
                    m.header(":exception-type").unwrap_or("exception"),
                    payload
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
            }
            if let Some(s) = payload
                .pointer("/contentDelta/stdout")
                .and_then(Value::as_str)
            {
                out.write_all(s.as_bytes())?;
                out.flush()?;
            }
            if let Some(s) = payload
                .pointer("/contentDelta/stderr")
                .and_then(Value::as_str)
            {
                err.write_all(s.as_bytes())?;
                err.flush()?;
            }
            if let Some(stop) = payload.get("contentStop") {
                let code = stop.get("exitCode").and_then(Value::as_i64).unwrap_or(-1) as i32;
                if stop.get("status").and_then(Value::as_str) == Some("TIMED_OUT") {
                    eprintln!("berth: the command timed out and was killed");
                }
                return match code {
                    0 => Ok(()),
                    c => Err(ExitWith(c).into()),
                };
            }
        }
    }
    bail!("the stream ended before the command's exit was reported")
}
