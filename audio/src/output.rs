//! The output side: one 20 ms frame per tick handed to the voice transport.
//!
//! The tick calls an [`OutputSink`] with a borrowed [`OutputFrame`]; a sink
//! must not block or allocate. [`output_ring`] gives the usual sink: an SPSC
//! ring of pooled, preallocated [`OutputPacket`]s read by the transport.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::frame::OUTPUT_FRAME_SAMPLES;
use crate::opus::MAX_OPUS_PACKET;

/// One tick's output, borrowed from the engine for the duration of the call.
#[derive(Debug, Clone, Copy)]
pub struct OutputFrame<'a> {
    /// The tick that produced it.
    pub tick: u64,
    /// 20 ms of 48 kHz interleaved stereo PCM (1920 samples).
    pub pcm: &'a [i16],
    /// The same audio Opus-encoded, when the codec is Opus and the frame is
    /// audible (or within the tail after audible frames).
    pub opus: Option<&'a [u8]>,
    /// True if any source contributed (the transport's "speaking" state).
    pub audible: bool,
}

/// Receives the output frame of every tick, on the tick thread: must return
/// at once without blocking or allocating.
pub trait OutputSink: Send {
    /// Takes one frame.
    fn deliver(&mut self, frame: &OutputFrame<'_>);
}

/// Discards every frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn deliver(&mut self, _frame: &OutputFrame<'_>) {}
}

/// The storage of one output frame, recycled through a pool.
struct PacketData {
    tick: u64,
    audible: bool,
    pcm: [i16; OUTPUT_FRAME_SAMPLES],
    opus: [u8; MAX_OPUS_PACKET],
    opus_len: usize,
    has_opus: bool,
}

type Pool = Arc<ArrayQueue<Box<PacketData>>>;

/// One output frame taken from an [`output_ring`]. Its buffer goes back to
/// the ring's pool when dropped (hold on to packets briefly: while the
/// transport holds them all, new frames are dropped and counted).
pub struct OutputPacket {
    data: Option<Box<PacketData>>,
    pool: Pool,
}

impl std::fmt::Debug for OutputPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputPacket")
            .field("tick", &self.tick())
            .field("audible", &self.audible())
            .field("opus_len", &self.opus().map(<[u8]>::len))
            .finish_non_exhaustive()
    }
}

impl OutputPacket {
    fn data(&self) -> Option<&PacketData> {
        self.data.as_deref()
    }

    /// The tick that produced it.
    pub fn tick(&self) -> u64 {
        self.data().map_or(0, |d| d.tick)
    }

    /// True if any source contributed (the transport's "speaking" state).
    pub fn audible(&self) -> bool {
        self.data().is_some_and(|d| d.audible)
    }

    /// 20 ms of 48 kHz interleaved stereo PCM.
    pub fn pcm(&self) -> &[i16] {
        self.data().map_or(&[], |d| &d.pcm[..])
    }

    /// The Opus packet, if the frame was encoded.
    pub fn opus(&self) -> Option<&[u8]> {
        self.data().filter(|d| d.has_opus).map(|d| &d.opus[..d.opus_len])
    }
}

impl Drop for OutputPacket {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let _ = self.pool.push(data);
        }
    }
}

/// An [`OutputSink`] handing frames to an [`OutputReceiver`] through an SPSC
/// ring of pooled, preallocated buffers (one copy of the PCM per frame, no
/// allocation).
pub struct RingSink {
    filled: HeapProd<Box<PacketData>>,
    pool: Pool,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for RingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSink").finish_non_exhaustive()
    }
}

impl OutputSink for RingSink {
    fn deliver(&mut self, frame: &OutputFrame<'_>) {
        let Some(mut data) = self.pool.pop() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.tick = frame.tick;
        data.audible = frame.audible;
        let n = frame.pcm.len().min(OUTPUT_FRAME_SAMPLES);
        data.pcm[..n].copy_from_slice(&frame.pcm[..n]);
        data.pcm[n..].fill(0);
        data.has_opus = frame.opus.is_some();
        data.opus_len = 0;
        if let Some(opus) = frame.opus {
            let n = opus.len().min(MAX_OPUS_PACKET);
            data.opus[..n].copy_from_slice(&opus[..n]);
            data.opus_len = n;
        }
        if let Err(data) = self.filled.try_push(data) {
            let _ = self.pool.push(data);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The transport's end of an [`output_ring`].
pub struct OutputReceiver {
    filled: HeapCons<Box<PacketData>>,
    pool: Pool,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for OutputReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputReceiver").finish_non_exhaustive()
    }
}

impl OutputReceiver {
    /// The next frame, if any (never blocks).
    pub fn try_recv(&mut self) -> Option<OutputPacket> {
        self.filled.try_pop().map(|data| OutputPacket {
            data: Some(data),
            pool: Arc::clone(&self.pool),
        })
    }

    /// Frames lost because the transport fell behind (ring full or every
    /// buffer still held).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A ring-backed sink holding up to `capacity` frames, and its reader.
/// Buffers for `capacity` + 4 frames are allocated here, once.
pub fn output_ring(capacity: usize) -> (RingSink, OutputReceiver) {
    let capacity = capacity.max(1);
    let buffers = capacity + 4;
    let pool: Pool = Arc::new(ArrayQueue::new(buffers));
    for _ in 0..buffers {
        let _ = pool.push(Box::new(PacketData {
            tick: 0,
            audible: false,
            pcm: [0; OUTPUT_FRAME_SAMPLES],
            opus: [0; MAX_OPUS_PACKET],
            opus_len: 0,
            has_opus: false,
        }));
    }
    let (filled, cons) = HeapRb::new(capacity).split();
    let dropped = Arc::new(AtomicU64::new(0));
    (
        RingSink {
            filled,
            pool: Arc::clone(&pool),
            dropped: Arc::clone(&dropped),
        },
        OutputReceiver {
            filled: cons,
            pool,
            dropped,
        },
    )
}
