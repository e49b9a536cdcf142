//! A decoder for Server-Sent Events (the `text/event-stream` format that
//! OpenAI-compatible chat APIs stream in).

/// One event: its type (from `event:` lines) and data (`data:` lines joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty for the default `message` type.
    pub event: String,
    /// The data lines, joined by newlines.
    pub data: String,
}

/// Incremental SSE decoder: feed bytes as they arrive, take complete events out.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

/// Bytes of one SSE line that are not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event stream line is not UTF-8")]
pub struct SseError;

impl SseDecoder {
    /// Feeds `bytes` and appends every event they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = 0;
        while i < self.buffer.len() {
            match self.buffer[i] {
                b'\n' => {
                    self.line(start, i, out)?;
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    if i + 1 == self.buffer.len() {
                        break; // might be the first half of \r\n: wait for more
                    }
                    self.line(start, i, out)?;
                    i += if self.buffer[i + 1] == b'\n' { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        self.buffer.drain(..start);
        Ok(())
    }

    /// Ends the stream: a last event without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.buffer.is_empty() {
            let end = self.buffer.len() - usize::from(self.buffer.ends_with(b"\r"));
            self.line(0, end, out)?;
            self.buffer.clear();
        }
        self.dispatch(out);
        Ok(())
    }

    fn line(&mut self, start: usize, end: usize, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::str::from_utf8(&self.buffer[start..end]).map_err(|_| SseError)?;
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            _ => {} // id, retry and unknown fields do not matter here
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            });
        } else {
            self.event.clear();
        }
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &str, piece: usize) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            decoder.push(chunk, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let input =
            "data: {\"a\":1}\n\n: keep-alive\n\nevent: delta\ndata: line one\ndata: line two\n\ndata: [DONE]\n\n";
        for piece in 1..input.len() {
            let events = decode_in_pieces(input, piece);
            assert_eq!(
                data(&events),
                ["{\"a\":1}", "line one\nline two", "[DONE]"],
                "piece {piece}"
            );
            assert_eq!(events[1].event, "delta");
            assert_eq!(events[2].event, "");
        }
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        for piece in 1..8 {
            assert_eq!(
                data(&decode_in_pieces("data: x\r\n\r\ndata:y\r\rdata: z", piece)),
                ["x", "y", "z"]
            );
        }
    }

    #[test]
    fn fields_without_data_dispatch_nothing() {
        assert!(decode_in_pieces("event: ping\nid: 3\nretry: 10\n\n", 4).is_empty());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        assert_eq!(decoder.push(b"data: \xff\xfe\n", &mut out), Err(SseError));
    }
}
