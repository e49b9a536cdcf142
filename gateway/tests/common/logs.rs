//! Log capture for tests: one global subscriber (installed once per test
//! binary) feeding every live capture.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// Every log line written while a capture is alive.
///
/// One global subscriber feeds every live capture. A per-test scoped
/// subscriber (`set_default`) loses lines: a callsite first hit by a
/// concurrent test with no subscriber can cache "never interested" just as
/// this test registers its own. Tests running at the same time may see each
/// other's lines, which only makes the "no secret in any line" checks stricter.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// The buffers of the captures alive now.
static CAPTURES: Mutex<Vec<Arc<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for sink in CAPTURES.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops a capture when dropped.
pub struct CaptureGuard(Arc<Mutex<Vec<u8>>>);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|sink| !Arc::ptr_eq(sink, &self.0));
    }
}

/// Starts capturing every log line (all levels) until the guard drops.
pub fn capture_logs() -> (Logs, CaptureGuard) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test binary");
    });
    let logs = Logs::default();
    CAPTURES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&logs.0));
    let guard = CaptureGuard(Arc::clone(&logs.0));
    (logs, guard)
}
