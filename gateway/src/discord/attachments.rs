//! [`HttpAttachments`]: downloads the files users attach to commands
//! (campaign YAML, Foundry exports) over HTTP, refusing anything over the
//! size limit before reading it all.

use std::time::Duration;

use async_trait::async_trait;

use crate::commands::interaction::Attachment;
use crate::commands::AttachmentSource;

/// How long one download may take by default.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// An [`AttachmentSource`] over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpAttachments {
    client: reqwest::Client,
}

impl HttpAttachments {
    /// A downloader whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the attachment downloader: {e}"))?;
        Ok(Self { client })
    }

    /// A downloader over an existing client (its timeouts apply).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

fn too_large(max_bytes: u64) -> String {
    format!("the file is larger than {} (the most accepted)", human_size(max_bytes))
}

fn human_size(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("{} MB", bytes / MB)
    } else {
        format!("{bytes} bytes")
    }
}

#[async_trait]
impl AttachmentSource for HttpAttachments {
    async fn fetch(&self, attachment: &Attachment, max_bytes: u64) -> Result<Vec<u8>, String> {
        if attachment.size > max_bytes {
            return Err(too_large(max_bytes));
        }
        let name = &attachment.filename;
        let mut response = self
            .client
            .get(&attachment.url)
            .send()
            .await
            .map_err(|e| format!("cannot download {name}: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("cannot download {name}: the server answered {status}"));
        }
        if response.content_length().is_some_and(|length| length > max_bytes) {
            return Err(too_large(max_bytes));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("downloading {name} failed: {}", e.without_url()))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(too_large(max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves `body` once per connection; `length` is the Content-Length
    /// header to claim (`None`: chunked, no length).
    async fn serve(body: Vec<u8>, length: Option<usize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    let head = match length {
                        Some(length) => {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
                        }
                        None => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        format!("http://{addr}/attachments/1/file.yaml")
    }

    fn attachment(url: String, size: u64) -> Attachment {
        Attachment {
            id: "1".into(),
            filename: "file.yaml".into(),
            size,
            url,
        }
    }

    #[tokio::test]
    async fn downloads_within_the_limit() {
        let url = serve(b"campaign: {name: x}".to_vec(), Some(19)).await;
        let files = HttpAttachments::new(Duration::from_secs(5)).unwrap();
        let bytes = files.fetch(&attachment(url, 19), 100).await.unwrap();
        assert_eq!(bytes, b"campaign: {name: x}");
    }

    #[tokio::test]
    async fn refuses_what_is_too_large_by_size_header_or_body() {
        let files = HttpAttachments::new(Duration::from_secs(5)).unwrap();
        // Discord's reported size is checked before downloading anything.
        let error = files
            .fetch(
                &attachment("http://127.0.0.1:1/never".into(), 11 * 1024 * 1024),
                10 * 1024 * 1024,
            )
            .await
            .unwrap_err();
        assert!(error.contains("10 MB"), "{error}");
        // The server's Content-Length.
        let url = serve(vec![b'x'; 500], Some(500)).await;
        let error = files.fetch(&attachment(url, 10), 100).await.unwrap_err();
        assert!(error.contains("100 bytes"), "{error}");
        // No length at all: counted while reading.
        let url = serve(vec![b'x'; 500], None).await;
        let error = files.fetch(&attachment(url, 10), 100).await.unwrap_err();
        assert!(error.contains("larger"), "{error}");
    }

    #[tokio::test]
    async fn unreachable_files_say_so() {
        let files = HttpAttachments::new(Duration::from_secs(5)).unwrap();
        let error = files
            .fetch(&attachment("http://127.0.0.1:1/x".into(), 1), 100)
            .await
            .unwrap_err();
        assert!(error.contains("cannot download file.yaml"), "{error}");
    }
}
