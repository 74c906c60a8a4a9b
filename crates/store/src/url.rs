//! The one parser of store URLs. Everything that takes a `--store` value (opening the stores,
//! the CLI's file-mode handling of the data dir) goes through [`StoreUrl::parse`], so a URL is
//! understood, or rejected with the same message, everywhere.

use crate::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A parsed store URL: which backend, and where its data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH[?OPTIONS]`: one database file. `PATH` is taken as written (relative paths
    /// are relative to the working directory); `OPTIONS` are SQLite connection options passed to
    /// the driver (`mode=rwc`, ...).
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The query string after `?`, without the `?`; empty when absent.
        options: String,
    },
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?OPTIONS]` (or `postgresql://`): a database
    /// that several server nodes share. The URL goes to the driver as written; `OPTIONS` are
    /// libpq-style connection parameters (`sslmode=require`, ...).
    Postgres {
        /// The URL as given, password included: pass it to the driver, never to a log (its
        /// [`Display`](fmt::Display) shows the password as `***`).
        url: String,
    },
}

/// Why a URL was rejected; shown after the (redacted) URL.
fn bad(url: &str, reason: &'static str) -> Error {
    Error::BadUrl {
        url: redact(url),
        reason,
    }
}

/// The URL with any password replaced by `***`, fit for an error message or a log line.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl StoreUrl {
    /// Parses a store URL. Errors name the URL (passwords redacted) and say what is wrong.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(
                url,
                "a store url starts with a scheme: use sqlite://PATH or postgres://...",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
                if path.is_empty() {
                    return Err(bad(url, "the sqlite url names no file: use sqlite://PATH"));
                }
                if path.starts_with(":memory:") || options.split('&').any(|o| o == "mode=memory") {
                    // The writer and reader pools would each get their own empty database.
                    return Err(bad(
                        url,
                        "an in-memory sqlite database is not supported: name a file",
                    ));
                }
                Ok(Self::Sqlite {
                    path: PathBuf::from(path),
                    options: options.to_owned(),
                })
            }
            "postgres" | "postgresql" => {
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if host.is_empty() && !rest.contains("host=") {
                    return Err(bad(
                        url,
                        "the postgresql url names no host: use postgres://USER:PASSWORD@HOST/DB",
                    ));
                }
                if sqlx::postgres::PgConnectOptions::from_str(url).is_err() {
                    return Err(bad(
                        url,
                        "not a valid postgresql url: use postgres://USER:PASSWORD@HOST[:PORT]/DB",
                    ));
                }
                Ok(Self::Postgres {
                    url: url.to_owned(),
                })
            }
            _ => Err(bad(
                url,
                "unknown store backend: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
            )),
        }
    }

    /// The database file of a SQLite URL; `None` for other backends.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path, .. } => Some(path),
            Self::Postgres { .. } => None,
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path, options } if options.is_empty() => {
                write!(f, "sqlite://{}", path.display())
            }
            Self::Sqlite { path, options } => write!(f, "sqlite://{}?{options}", path.display()),
            Self::Postgres { url } => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display already redacts; redact again so no future variant can leak into a debug log.
        write!(f, "StoreUrl({})", redact(&self.to_string()))
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        StoreUrl::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn sqlite_urls_name_their_file_and_keep_their_options() {
        let u = StoreUrl::parse("sqlite:///d/berth.db?mode=rwc").unwrap();
        assert_eq!(u.sqlite_path(), Some(Path::new("/d/berth.db")));
        assert_eq!(u.to_string(), "sqlite:///d/berth.db?mode=rwc");
        let u = StoreUrl::parse("sqlite://rel/berth.db").unwrap();
        assert_eq!(u.sqlite_path(), Some(Path::new("rel/berth.db")));
        assert_eq!(u.to_string(), "sqlite://rel/berth.db");
        assert_eq!(
            "SQLITE:///x".parse::<StoreUrl>().unwrap().sqlite_path(),
            Some(Path::new("/x"))
        );
    }

    #[test]
    fn bad_urls_are_named_in_the_error() {
        for (url, why) in [
            ("/var/lib/berth.db", "starts with a scheme"),
            ("sqlite://", "names no file"),
            ("sqlite://?mode=rwc", "names no file"),
            ("sqlite://:memory:", "in-memory"),
            ("sqlite:///x.db?mode=memory", "in-memory"),
            ("mysql://h/db", "unknown store backend"),
            ("postgres:///db", "names no host"),
            ("postgres://u@/db", "names no host"),
            ("postgres://h:notaport/db", "not a valid postgresql url"),
        ] {
            let e = reason(url);
            assert!(e.contains(url), "{url}: {e}");
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn postgres_urls_go_to_the_driver_as_written_and_show_no_password() {
        for url in [
            "postgres://berth:s3cret@db.internal:5432/berth",
            "postgresql://berth:s3cret@db.internal/berth?sslmode=disable",
        ] {
            let u = StoreUrl::parse(url).unwrap();
            assert_eq!(u, StoreUrl::Postgres { url: url.into() });
            assert_eq!(u.sqlite_path(), None);
            assert!(!u.to_string().contains("s3cret"), "{u}");
            assert!(!format!("{u:?}").contains("s3cret"), "{u:?}");
            assert!(u.to_string().contains("berth:***@db.internal"), "{u}");
        }
    }

    #[test]
    fn passwords_never_reach_an_error() {
        let e = reason("postgres://berth:s3cret@db.internal:notaport/berth");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(
            e.contains("postgres://berth:***@db.internal:notaport/berth"),
            "{e}"
        );
        assert_eq!(redact("sqlite:///a@b:c"), "sqlite:///a@b:c");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
