//! The log file of `--log-file`: written line by line, and reopened by its path on `SIGUSR1`
//! so that logrotate can move it away (nginx's `USR1`). Logs are not on the request path at
//! the default level, so a lock per line costs nothing that matters.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared handle; clones write to the same file.
#[derive(Clone, Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(open(path)?)),
        })
    }

    /// Opens the path again; on failure the file already open is kept and the error returned.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open(&self.path)?;
        *self.lock() = file;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while writing a log line leaves the file usable.
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One log event's writer.
pub struct Line<'a>(MutexGuard<'a, File>);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self.lock())
    }
}
