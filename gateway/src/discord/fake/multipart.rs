//! A small `multipart/form-data` reader for the bodies Discord clients send
//! with files: the `payload_json` field and the file parts.

use super::records::UploadedFile;

/// The parts of a multipart body the fake uses.
#[derive(Debug, Default)]
pub(super) struct Form {
    /// The `payload_json` field, if present.
    pub(super) payload_json: Option<String>,
    /// Parts with a file name.
    pub(super) files: Vec<UploadedFile>,
}

/// Whether a `Content-Type` is `multipart/form-data`.
pub(super) fn is_multipart(content_type: &str) -> bool {
    content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}

fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|value| !value.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A `key="value"` parameter of a `Content-Disposition` header.
fn disposition_parameter<'a>(disposition: &'a str, wanted: &str) -> Option<&'a str> {
    disposition.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(wanted)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Parses a multipart body; `None` if it is malformed.
pub(super) fn parse(content_type: &str, body: &[u8]) -> Option<Form> {
    let delimiter = format!("--{}", boundary(content_type)?);
    let separator = format!("\r\n{delimiter}");
    let start = find(body, delimiter.as_bytes())?;
    let mut rest = body.get(start + delimiter.len()..)?;
    let mut form = Form::default();
    loop {
        if rest.starts_with(b"--") {
            return Some(form);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, separator.as_bytes())?;
        let part = rest.get(..end)?;
        rest = rest.get(end + separator.len()..)?;
        let header_end = find(part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(part.get(..header_end)?).ok()?;
        let content = part.get(header_end + 4..)?;
        let mut name = None;
        let mut filename = None;
        let mut part_type = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_parameter(value, "name").map(str::to_owned);
                filename = disposition_parameter(value, "filename").map(str::to_owned);
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                part_type = Some(value.trim().to_owned());
            }
        }
        let name = name?;
        match filename {
            Some(filename) => form.files.push(UploadedFile {
                field: name,
                filename,
                content_type: part_type,
                bytes: content.to_vec(),
            }),
            None if name == "payload_json" => {
                form.payload_json = Some(String::from_utf8_lossy(content).into_owned());
            }
            // Other text fields (none of the routes the fake serves use them).
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payload_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a.txt\"\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\r\n\
{\"content\":\"hi\"}\r\n--XyZ--\r\n";
        let form = parse("multipart/form-data; boundary=XyZ", body).expect("valid form");
        assert_eq!(form.payload_json.as_deref(), Some("{\"content\":\"hi\"}"));
        assert_eq!(form.files.len(), 1);
        assert_eq!(form.files[0].field, "files[0]");
        assert_eq!(form.files[0].filename, "a.txt");
        assert_eq!(form.files[0].content_type.as_deref(), Some("text/plain"));
        assert_eq!(form.files[0].bytes, b"hello");
    }

    #[test]
    fn malformed_bodies_are_none() {
        assert!(parse("multipart/form-data", b"x").is_none());
        assert!(parse("multipart/form-data; boundary=b", b"--b\r\nno headers end").is_none());
        assert!(parse("multipart/form-data; boundary=b", b"").is_none());
    }
}
