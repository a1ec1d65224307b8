//! Standard error for the binaries' logs, whatever becomes of it: a line that cannot be
//! written (its reader gone, a log collector restarting) is dropped. tracing-subscriber would
//! report the failure by printing to standard error, which panics when that fails too, and a
//! panic in the task that logged could leave SIGTERM unheeded or stop the program.

/// Writes to standard error and never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
