//! The fake's WebSocket side: accepts gateway connections and runs one task
//! per connection that hands text payloads to [`super::sessions`] and writes
//! the frames queued for it (dispatches, ACKs, close frames).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::state::{Outbound, Shared};

/// How long a closing connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts connections until the task is aborted; aborting it ends every connection.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    tracing::warn!(%error, "fake Discord gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One gateway connection, from handshake to close.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let socket = match tokio_tungstenite::accept_async(stream).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!(%error, "fake Discord gateway: not a WebSocket handshake");
            return;
        }
    };
    let (mut sink, mut source) = socket.split();
    let (outbound, mut frames) = mpsc::unbounded_channel();
    let id = shared.write(|state| state.on_connect(outbound));
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Outbound::Text(text)) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let close = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    if sink.send(Message::Close(Some(close))).await.is_ok() {
                        // Let the client answer the close handshake before dropping the socket.
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while let Some(Ok(message)) = source.next().await {
                                if message.is_close() {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                    break;
                }
                None => break,
            },
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => shared.write(|state| state.on_gateway_text(id, text.as_str())),
                Some(Ok(Message::Binary(_))) => shared.write(|state| state.on_gateway_binary(id)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
        }
    }
    shared.write(|state| state.close_connection(id));
}
