//! `SessionEngine`: one dedicated OS thread per voice session running the
//! tick loop `while clock.wait_for_tick(n) { core.tick() }`.
//!
//! The thread builds its [`SessionCore`] itself (the VAD pool must be created
//! on it), hands the async-side handles back, and then runs until a shutdown
//! command, the clock ending the loop, or the engine being dropped.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::clock::{Clock, ClockStopper};
use crate::control::{Command, Shared};
use crate::error::AudioError;
use crate::output::OutputSink;
use crate::settings::EngineSettings;
use crate::tick::{SessionCore, SessionHandles, TickOutcome};

/// Owns a session's realtime thread. Dropping it stops and joins the thread.
pub struct SessionEngine {
    thread: Option<JoinHandle<u64>>,
    shared: Arc<Shared>,
    clock: ClockStopper,
}

impl std::fmt::Debug for SessionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEngine")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl SessionEngine {
    /// Starts the realtime thread `name` paced by `clock`, with every buffer
    /// preallocated from `settings`; frames go to `sink`.
    pub fn spawn(
        name: &str,
        settings: &EngineSettings,
        sink: Box<dyn OutputSink>,
        mut clock: impl Clock + 'static,
    ) -> Result<(Self, SessionHandles), AudioError> {
        settings.validate()?;
        let settings = settings.clone();
        let stopper = clock.stopper();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let (mut core, handles) = match SessionCore::new(&settings, sink) {
                    Ok(built) => built,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return 0;
                    }
                };
                let shared = Arc::clone(&handles.control.shared);
                if ready_tx.send(Ok(handles)).is_err() {
                    return 0;
                }
                while clock.wait_for_tick(core.current_tick()) {
                    if core.tick() == TickOutcome::Stop {
                        break;
                    }
                }
                shared.stopped.store(true, Ordering::Release);
                core.current_tick()
            })
            .map_err(AudioError::ThreadSpawn)?;
        match ready_rx.recv() {
            Ok(Ok(handles)) => {
                let shared = Arc::clone(&handles.control.shared);
                Ok((
                    Self {
                        thread: Some(thread),
                        shared,
                        clock: stopper,
                    },
                    handles,
                ))
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(AudioError::EngineStopped)
            }
        }
    }

    /// True while the tick loop runs.
    pub fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::Acquire) && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the tick loop to end by itself (clock limit, shutdown
    /// command); returns the number of ticks run.
    pub fn join(mut self) -> u64 {
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }

    /// Stops the loop after the current tick (interrupting the clock's
    /// wait) and joins the thread; returns the number of ticks run.
    pub fn stop(mut self) -> u64 {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> u64 {
        let Some(thread) = self.thread.take() else {
            return 0;
        };
        if !self.shared.stopped.load(Ordering::Acquire) {
            // If the queue is full the loop still drains it and finds this
            // command soon after; retry until it fits or the loop ended.
            let mut command = Command::Shutdown;
            while let Err(back) = self.shared.commands.push(command) {
                if thread.is_finished() {
                    break;
                }
                command = back;
                std::thread::yield_now();
            }
        }
        self.clock.stop();
        thread.join().unwrap_or(0)
    }
}

impl Drop for SessionEngine {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
