//! Helpers shared by this crate's integration tests.

#![allow(dead_code)]

pub mod exporter;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads an HTTP request up to the blank line after its headers, as the
/// tests' stand-in exporters do; `None` if the peer goes away first.
pub async fn read_head(conn: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}
