//! Client-side cost of the streaming provider clients.
//!
//! 1. Decoding cost per streamed LLM token (SSE → event) and per 20 ms PCM
//!    chunk (bytes → samples), with criterion.
//! 2. What the client adds to time-to-first-byte: the OpenAI chat client
//!    against a loopback fake vs. a raw socket sending the same request to
//!    the same fake and waiting for the first `data:` byte.
//!    Budget: the client adds < 0.5 ms.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use futures_util::StreamExt;
use glyphoxa_pipeline::providers::fake::openai::{chat_stream, sse_event};
use glyphoxa_pipeline::providers::fake::FakeHttpServer;
use glyphoxa_pipeline::providers::http::{http_client, CallContext, ChunkDecoder};
use glyphoxa_pipeline::providers::openai::{ChatDecoder, OpenAiChat};
use glyphoxa_pipeline::providers::{
    CallPolicy, ChatMessage, ChatRequest, LanguageModel, NoObserver, PcmBodyDecoder, Role, Stage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Budget from the providers issue: streaming adds < 0.5 ms to time to first byte.
const TTFB_OVERHEAD_BUDGET: Duration = Duration::from_micros(500);
const TTFB_SAMPLES: usize = 300;

fn token_events(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            sse_event(&serde_json::json!({"choices": [{"index": 0, "delta": {"content": format!(" word{i}")}}]}))
        })
        .collect()
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let tokens = 200;
    let body = token_events(tokens);
    // Network reads deliver a few events at a time.
    let pieces: Vec<&[u8]> = body.chunks(256).collect();
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function("llm_sse_per_token", |b| {
        b.iter(|| {
            let mut decoder = ChatDecoder::default();
            let mut out = VecDeque::new();
            for piece in &pieces {
                decoder.decode(piece, &mut out).expect("valid stream");
            }
            out.len()
        })
    });
    // 20 ms of 24 kHz mono s16le = 960 bytes, delivered in odd-sized reads.
    let pcm: Vec<u8> = (0..960 * 50).map(|i| (i % 251) as u8).collect();
    let reads: Vec<&[u8]> = pcm.chunks(1_021).collect();
    group.throughput(Throughput::Elements(50));
    group.bench_function("tts_pcm_per_20ms_chunk", |b| {
        b.iter(|| {
            let mut decoder = PcmBodyDecoder::new(24_000, 1);
            let mut out = VecDeque::new();
            for read in &reads {
                decoder.decode(read, &mut out).expect("valid pcm");
            }
            out.len()
        })
    });
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Time to first `data:` byte over a kept-alive raw socket.
async fn raw_ttfb(server: &FakeHttpServer, body: &str) -> Vec<Duration> {
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        server.addr(),
        body.len()
    );
    let mut times = Vec::with_capacity(TTFB_SAMPLES);
    let mut buffer = vec![0u8; 16 * 1024];
    for _ in 0..TTFB_SAMPLES {
        let started = Instant::now();
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut seen = Vec::new();
        let mut first = None;
        loop {
            let n = socket.read(&mut buffer).await.expect("read");
            assert!(n > 0, "fake closed the connection");
            seen.extend_from_slice(&buffer[..n]);
            if first.is_none() && seen.windows(5).any(|w| w == b"data:") {
                first = Some(started.elapsed());
            }
            if seen.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
        times.push(first.expect("a data line"));
    }
    times
}

/// Time to the first event through the OpenAI chat client.
async fn client_ttfb(server: &FakeHttpServer) -> Vec<Duration> {
    let policy = CallPolicy::default();
    let chat = OpenAiChat::new(
        http_client(&policy).expect("client"),
        &server.url("/v1").expect("url"),
        None,
        "bench",
        CallContext {
            provider: "openai",
            stage: Stage::Llm,
            policy,
            observer: Arc::new(NoObserver),
        },
    );
    let request = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, "hi")],
        ..ChatRequest::default()
    };
    let mut times = Vec::with_capacity(TTFB_SAMPLES);
    for _ in 0..TTFB_SAMPLES {
        let started = Instant::now();
        let mut stream = chat.chat(request.clone()).await.expect("chat");
        stream.next().await.expect("an event").expect("ok event");
        times.push(started.elapsed());
        while stream.next().await.is_some() {}
    }
    times
}

fn ttfb_overhead() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = FakeHttpServer::start().await.expect("fake server");
        server.set_fallback(chat_stream(&["Hello", " there."], Duration::ZERO, Duration::ZERO));
        let body =
            serde_json::json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": true})
                .to_string();
        // Warm up both paths (connection set-up, allocator).
        let _ = raw_ttfb(&server, &body).await;
        let _ = client_ttfb(&server).await;
        let mut raw = raw_ttfb(&server, &body).await;
        let mut client = client_ttfb(&server).await;
        raw.sort();
        client.sort();
        let (raw50, client50) = (percentile(&raw, 0.5), percentile(&client, 0.5));
        let (raw99, client99) = (percentile(&raw, 0.99), percentile(&client, 0.99));
        let overhead = client50.saturating_sub(raw50);
        println!();
        println!("time to first byte, OpenAI chat stream over loopback ({TTFB_SAMPLES} requests each)");
        println!(
            "  raw socket        p50 {:>8.1} µs   p99 {:>8.1} µs",
            micros(raw50),
            micros(raw99)
        );
        println!(
            "  glyphoxa client   p50 {:>8.1} µs   p99 {:>8.1} µs",
            micros(client50),
            micros(client99)
        );
        println!(
            "  client overhead   p50 {:>8.1} µs   budget < {:.0} µs   {}",
            micros(overhead),
            micros(TTFB_OVERHEAD_BUDGET),
            if overhead < TTFB_OVERHEAD_BUDGET {
                "OK"
            } else {
                "OVER BUDGET"
            }
        );
    });
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

criterion_group!(benches, decoding);

fn main() {
    benches();
    ttfb_overhead();
    Criterion::default().configure_from_args().final_summary();
}
