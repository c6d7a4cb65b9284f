//! Something built from files, rebuilt when the files change.
//!
//! Certificates are renewed on disk (cert-manager rewrites a Secret's files, certbot and
//! `cargo xtask up` replace them), and a mail node must not restart to pick them up: the
//! public listeners and the internal mutual-TLS ports both keep a [`Reloading`] and ask it
//! for the current value on every new handshake. The files' modification times are looked at
//! no more often than every [`RECHECK`]; a rebuild that fails keeps the previous value and
//! logs why, so a half-written renewal never takes TLS down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the files' modification times are looked at, at most.
pub const RECHECK: Duration = Duration::from_secs(2);

type Build<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value built from `paths`, rebuilt when one of them changes.
pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl<T> Reloading<T> {
    /// Builds the value now (an error here is a configuration error the caller reports at
    /// start-up) and keeps `build` for the rebuilds.
    pub fn new<E, F>(paths: Vec<PathBuf>, build: F) -> Result<Self, E>
    where
        E: std::fmt::Display,
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        let stamps = paths.iter().map(|p| modified(p)).collect();
        let value = Arc::new(build()?);
        Ok(Self {
            paths,
            build: Box::new(move || build().map_err(|e| e.to_string())),
            state: Mutex::new(State {
                value,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The current value, rebuilt first when a file's modification time changed since the
    /// last look (at most every [`RECHECK`]).
    pub fn current(&self) -> Arc<T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= RECHECK {
            s.checked = Instant::now();
            let stamps: Vec<_> = self.paths.iter().map(|p| modified(p)).collect();
            if stamps != s.stamps {
                match (self.build)() {
                    Ok(value) => {
                        s.value = Arc::new(value);
                        s.stamps = stamps;
                        tracing::info!(files = ?self.paths, "reloaded after the files changed");
                    }
                    Err(error) => {
                        tracing::warn!(files = ?self.paths, %error, "reload failed; keeping the previous files");
                    }
                }
            }
        }
        s.value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_picked_up_and_a_broken_file_keeps_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let r = Reloading::new(vec![path.clone()], move || {
            std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())?
                .trim()
                .parse::<u32>()
                .map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*r.current(), 1);
        let touch = |text: &str, secs: u64| {
            std::fs::write(&path, text).unwrap();
            let when = SystemTime::now() + Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            r.state.lock().unwrap().checked -= RECHECK;
        };
        touch("2", 10);
        assert_eq!(*r.current(), 2);
        touch("not a number", 20);
        assert_eq!(*r.current(), 2, "a broken file keeps the previous value");
        touch("3", 30);
        assert_eq!(*r.current(), 3);
    }
}
