//! The stand-in exporter's answer, for every test that serves metrics
//! (this crate's tests, and the binary's through `#[path]`).

/// The text format's content type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// A complete `200 OK` HTTP/1.1 response carrying `body`, closing the connection.
pub fn response(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
