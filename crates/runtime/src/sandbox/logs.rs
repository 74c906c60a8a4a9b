//! Capture of the agent's stdout and stderr into one bounded log file.
//!
//! Format: one file, `work_root/logs/agent.log`, every line prefixed with `out ` or `err ` in the order
//! Berth read them. A line longer than 16 KiB is cut into several lines. When writing a line would
//! push the file past the cap, it is renamed to `agent.log.1` (replacing the previous one) and a new
//! file is started: at most twice the cap is on disk, and the newest lines are always kept.
//!
//! The agent writes into pipes that a tokio task drains; it is never handed the file itself, so it
//! cannot grow it unboundedly or seek in it. Writes go to the page cache in small chunks, short
//! enough to run on a tokio worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tracing::warn;

const MAX_LINE: usize = 16 * 1024;

/// The size-capped log file.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
    warned: bool,
}

impl LogFile {
    pub(crate) fn create(path: &Path, cap: u64) -> io::Result<Self> {
        // 0600: agent output may hold secrets; `berth logs` reads it through the server.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            cap,
            warned: false,
        })
    }

    fn write_line(&mut self, prefix: &[u8], line: &[u8]) {
        if let Err(e) = self.try_write_line(prefix, line)
            && !self.warned
        {
            // Keep draining the pipes anyway: a full pipe would block the agent.
            warn!(log = %self.path.display(), error = %e, "cannot write agent log");
            self.warned = true;
        }
    }

    fn try_write_line(&mut self, prefix: &[u8], line: &[u8]) -> io::Result<()> {
        let max_body = (self.cap as usize).saturating_sub(prefix.len() + 1);
        let line = &line[..line.len().min(max_body)];
        let len = (prefix.len() + line.len() + 1) as u64;
        if self.size > 0 && self.size + len > self.cap {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.path)?;
            self.size = 0;
        }
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }
}

/// Splits a stream into lines, holding back an unterminated tail.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, data: &[u8], prefix: &[u8], log: &mut LogFile) {
        self.partial.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            for chunk in self.partial[start..end].chunks(MAX_LINE) {
                log.write_line(prefix, chunk);
            }
            start = end + 1;
        }
        self.partial.drain(..start);
        while self.partial.len() >= MAX_LINE {
            log.write_line(prefix, &self.partial[..MAX_LINE]);
            self.partial.drain(..MAX_LINE);
        }
    }

    fn finish(&mut self, prefix: &[u8], log: &mut LogFile) {
        if !self.partial.is_empty() {
            log.write_line(prefix, &self.partial);
            self.partial.clear();
        }
    }
}

/// Drains both pipes into the log until every writer (the whole sandbox) has closed them.
pub(crate) async fn pump(mut out: pipe::Receiver, mut err: pipe::Receiver, mut log: LogFile) {
    let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; 8192];
    let mut err_buf = vec![0u8; 8192];
    while out_open || err_open {
        tokio::select! {
            r = out.read(&mut out_buf), if out_open => match r {
                Ok(0) | Err(_) => { out_open = false; out_lines.finish(b"out ", &mut log) }
                Ok(n) => out_lines.feed(&out_buf[..n], b"out ", &mut log),
            },
            r = err.read(&mut err_buf), if err_open => match r {
                Ok(0) | Err(_) => { err_open = false; err_lines.finish(b"err ", &mut log) }
                Ok(n) => err_lines.feed(&err_buf[..n], b"err ", &mut log),
            },
        }
    }
    let _ = log.file.flush();
}
