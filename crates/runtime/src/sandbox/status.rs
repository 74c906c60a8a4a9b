//! How a sandbox ended.

use std::fmt;

/// How the agent ended, as seen by [`Sandbox::exited`](super::Sandbox::exited).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitInfo {
    /// Exit code when the agent exited normally.
    pub code: Option<i32>,
    /// Signal number when the agent was killed by a signal.
    pub signal: Option<i32>,
    /// The sandbox's memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
    /// The end was caused by [`Sandbox::destroy`](super::Sandbox::destroy) (or dropping the sandbox),
    /// not by the agent itself: the session layer need not report it as a crash.
    pub destroyed: bool,
}

impl ExitInfo {
    /// Decodes a `waitpid` status word.
    pub(crate) fn from_wait_status(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            Self {
                code: Some(libc::WEXITSTATUS(status)),
                ..Self::default()
            }
        } else if libc::WIFSIGNALED(status) {
            Self {
                signal: Some(libc::WTERMSIG(status)),
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }

    /// True when the agent exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}")?,
            (None, Some(sig)) => write!(f, "was killed by signal {sig}")?,
            (None, None) => write!(f, "ended with an unknown status")?,
        }
        if self.oom_killed {
            write!(f, " (out of memory)")?;
        }
        if self.destroyed {
            write!(f, " (sandbox destroyed)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_status() {
        // Encodings from <sys/wait.h>: exit code in bits 8..16, signal in the low 7 bits.
        assert_eq!(ExitInfo::from_wait_status(3 << 8).code, Some(3));
        assert_eq!(ExitInfo::from_wait_status(9).signal, Some(9));
        let info = ExitInfo {
            signal: Some(9),
            oom_killed: true,
            ..ExitInfo::default()
        };
        assert_eq!(info.to_string(), "was killed by signal 9 (out of memory)");
    }
}
