//! A scripted HTTP/1.1 server on loopback for testing provider clients.
//!
//! It speaks plain HTTP/1.1 on a raw socket so tests control every byte:
//! when the first byte goes out, how chunks are paced, malformed bodies,
//! error statuses and requests that are never answered. It records every
//! request and notices when a client hangs up before the answer is complete
//! (cancellation tests).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path with query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response with this status and body (e.g. 429, 500).
    Status {
        /// HTTP status code.
        status: u16,
        /// Response body.
        body: Vec<u8>,
        /// Content type of the body.
        content_type: String,
    },
    /// A 200 response streamed in chunks (chunked transfer encoding).
    Stream {
        /// Content type, e.g. `text/event-stream`.
        content_type: String,
        /// The body pieces, each sent as one write.
        chunks: Vec<Vec<u8>>,
        /// Wait before the status line (time to first byte).
        first_byte_delay: Duration,
        /// Wait between two chunks.
        chunk_interval: Duration,
        /// After the chunks, keep the response open forever instead of ending it.
        hang_after: bool,
    },
    /// Read the request and never answer.
    Hang,
}

impl Reply {
    /// A JSON response with status 200.
    pub fn json(value: &serde_json::Value) -> Self {
        Reply::Status {
            status: 200,
            body: value.to_string().into_bytes(),
            content_type: "application/json".into(),
        }
    }

    /// An error response with an OpenAI-style JSON error body.
    pub fn error(status: u16, message: &str) -> Self {
        Reply::Status {
            status,
            body: serde_json::json!({ "error": { "message": message } })
                .to_string()
                .into_bytes(),
            content_type: "application/json".into(),
        }
    }

    /// A streamed 200 response with no delays.
    pub fn stream(content_type: &str, chunks: Vec<Vec<u8>>) -> Self {
        Reply::Stream {
            content_type: content_type.into(),
            chunks,
            first_byte_delay: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            hang_after: false,
        }
    }

    /// Sets the time to first byte of a streamed reply.
    pub fn first_byte_after(mut self, delay: Duration) -> Self {
        if let Reply::Stream { first_byte_delay, .. } = &mut self {
            *first_byte_delay = delay;
        }
        self
    }

    /// Sets the pause between chunks of a streamed reply.
    pub fn paced(mut self, interval: Duration) -> Self {
        if let Reply::Stream { chunk_interval, .. } = &mut self {
            *chunk_interval = interval;
        }
        self
    }

    /// Keeps a streamed reply open after its chunks (a provider that stalls mid-answer).
    pub fn then_hang(mut self) -> Self {
        if let Reply::Stream { hang_after, .. } = &mut self {
            *hang_after = true;
        }
        self
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    hangups: AtomicUsize,
    hangup_notify: Notify,
}

/// A loopback HTTP server answering from a script. Stops when dropped.
pub struct FakeHttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeHttpServer {
    /// Starts a server on `127.0.0.1` with a free port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve_connection(socket, accept_shared.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` (e.g. `/v1`).
    pub fn url(&self, path: &str) -> Result<url::Url, url::ParseError> {
        url::Url::parse(&format!("http://{}{}", self.addr, path))
    }

    /// Queues the reply for the next unanswered request.
    pub fn push(&self, reply: Reply) {
        if let Ok(mut script) = self.shared.script.lock() {
            script.push_back(reply);
        }
    }

    /// The reply for every request once the queue is empty.
    pub fn set_fallback(&self, reply: Reply) {
        if let Ok(mut fallback) = self.shared.fallback.lock() {
            *fallback = Some(reply);
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many clients hung up before their answer was complete.
    pub fn hangups(&self) -> usize {
        self.shared.hangups.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` clients hung up early, or `timeout` passes.
    pub async fn wait_for_hangups(&self, count: usize, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.hangup_notify.notified();
                if self.hangups() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

impl Drop for FakeHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests off one connection and answers each from the script.
async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut socket, &mut buffer).await {
            Some(request) => request,
            None => return,
        };
        if let Ok(mut requests) = shared.requests.lock() {
            requests.push(request);
        }
        let reply = shared
            .script
            .lock()
            .ok()
            .and_then(|mut script| script.pop_front())
            .or_else(|| shared.fallback.lock().ok().and_then(|f| f.clone()))
            .unwrap_or_else(|| Reply::error(404, "no scripted reply"));
        let complete = answer(&mut socket, reply).await;
        if !complete {
            shared.hangups.fetch_add(1, Ordering::SeqCst);
            shared.hangup_notify.notify_waiters();
            return;
        }
    }
}

/// Sends `reply`; `false` if the client hung up before it was complete.
async fn answer(socket: &mut TcpStream, reply: Reply) -> bool {
    match reply {
        Reply::Status {
            status,
            body,
            content_type,
        } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                reason(status),
                body.len()
            );
            socket.write_all(head.as_bytes()).await.is_ok() && socket.write_all(&body).await.is_ok()
        }
        Reply::Hang => wait_for_hangup(socket).await,
        Reply::Stream {
            content_type,
            chunks,
            first_byte_delay,
            chunk_interval,
            hang_after,
        } => {
            if !sleep_unless_hangup(socket, first_byte_delay).await {
                return false;
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 && !sleep_unless_hangup(socket, chunk_interval).await {
                    return false;
                }
                if chunk.is_empty() {
                    continue;
                }
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(chunk);
                frame.extend_from_slice(b"\r\n");
                if socket.write_all(&frame).await.is_err() {
                    return false;
                }
            }
            if hang_after {
                return wait_for_hangup(socket).await;
            }
            socket.write_all(b"0\r\n\r\n").await.is_ok()
        }
    }
}

/// Sleeps `delay` unless the client hangs up first (then `false`).
async fn sleep_unless_hangup(socket: &mut TcpStream, delay: Duration) -> bool {
    if delay.is_zero() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        hung_up = wait_for_hangup(socket) => !hung_up,
    }
}

/// Resolves when the client closes the connection; always `false` = "not complete".
async fn wait_for_hangup(socket: &mut TcpStream) -> bool {
    let mut scratch = [0u8; 512];
    loop {
        match socket.read(&mut scratch).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {} // a pipelined request while we hang: ignore
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request (head and body) from the socket; `None` at end of connection.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<RecordedRequest> {
    let head_end = loop {
        if let Some(pos) = find(buffer, b"\r\n\r\n") {
            break pos;
        }
        if !fill(socket, buffer).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(socket, buffer).await?
    } else {
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buffer.len() < length {
            if !fill(socket, buffer).await {
                return None;
            }
        }
        buffer.drain(..length).collect()
    };
    Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn read_chunked(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(buffer, b"\r\n") {
                break pos;
            }
            if !fill(socket, buffer).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        while buffer.len() < size + 2 {
            if !fill(socket, buffer).await {
                return None;
            }
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn fill(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut scratch = [0u8; 8192];
    match socket.read(&mut scratch).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&scratch[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
