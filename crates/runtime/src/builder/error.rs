//! The one error type of the version builder.

use std::io;
use std::time::Duration;

/// Why a version could not be built.
///
/// `Display` is written for the person who deployed the agent: it becomes the runtime's
/// `failureReason`, so it names the offending zip entry, the missing interpreter or entry point, and
/// quotes the tail of the failing tool's output.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A runtime family Berth cannot run yet, e.g. `NODE_22`.
    #[error("{0} runtimes are not supported yet")]
    UnsupportedRuntime(String),
    /// A runtime string that is not of the form `PYTHON_3_<minor>`.
    #[error("unknown runtime {0:?}: expected one of PYTHON_3_10 to PYTHON_3_14")]
    InvalidRuntime(String),
    /// No working `python3.X` for the requested runtime was found on the host.
    #[error(
        "no {program} interpreter found for runtime {runtime}: searched {searched}; \
         install Python 3.{minor} on the Berth host"
    )]
    InterpreterNotFound {
        /// The requested runtime, e.g. `PYTHON_3_12`.
        runtime: String,
        /// The interpreter looked for, e.g. `python3.12`.
        program: String,
        /// The minor version, e.g. 12.
        minor: u32,
        /// Where it was looked for, and why each candidate found was rejected.
        searched: String,
    },
    /// The zip archive cannot be read.
    #[error("the code package is not a valid zip archive: {0}")]
    InvalidZip(String),
    /// A zip entry that would escape the code directory or is otherwise refused.
    #[error("the code package entry {entry:?} is refused: {reason}")]
    UnsafeEntry {
        /// The entry name as stored in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive exceeds the unpacking limits (zip-bomb protection).
    #[error("the code package is too large: {0}")]
    TooLarge(String),
    /// The `entryPoint` does not name something that exists in the package or the environment.
    #[error("invalid entry point: {0}")]
    EntryPoint(String),
    /// `requirements.txt` or `pyproject.toml` cannot be used.
    #[error("invalid dependency declaration: {0}")]
    Dependencies(String),
    /// A build step (creating the virtual environment, pip) exited unsuccessfully.
    #[error("{step} failed ({status}):\n{output}")]
    Step {
        /// What was being done, e.g. `installing dependencies with pip`.
        step: String,
        /// How the process ended, e.g. `exit status: 1`.
        status: String,
        /// The tail of the process's error output.
        output: String,
    },
    /// A build step did not finish within [`BuilderOptions::timeout`](super::BuilderOptions::timeout).
    #[error("{step} timed out after {} s:\n{output}", after.as_secs())]
    Timeout {
        /// What was being done.
        step: String,
        /// The time limit that was exceeded.
        after: Duration,
        /// The tail of the process's output so far.
        output: String,
    },
    /// The build sandbox could not be set up (a host problem, not the package's).
    #[error("the build sandbox could not be started: {0}")]
    Sandbox(String),
    /// A digest passed in is not `sha256:<64 lowercase hex digits>`.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// The builder's configuration cannot work, e.g. a build root that is not valid UTF-8.
    #[error("invalid builder configuration: {0}")]
    Config(String),
    /// A filesystem or process error on the Berth host.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `creating /data/builds/code`.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl BuildError {
    /// Wraps an IO error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
