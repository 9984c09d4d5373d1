//! pharos-chunkenc: Gorilla-style compressed chunks of float samples.
//!
//! This crate owns the on-disk / in-memory encoding of a *chunk*: a short run
//! (about [`TARGET_SAMPLES`] samples) of one series' `(timestamp, value)`
//! pairs, with timestamps in milliseconds (`i64`) and values as `f64`. It
//! implements the XOR scheme from Facebook's Gorilla paper in the exact bit
//! layout of Prometheus' `chunkenc` XOR chunks. It knows nothing about
//! series, labels or storage; callers decide when to cut a new chunk.
//!
//! * [`ChunkEncoder`] appends samples to a chunk and can reopen an encoded
//!   chunk for further appends ([`ChunkEncoder::from_bytes`]).
//! * [`iter`] / [`ChunkIter`] decode lazily; [`decode`] collects into a
//!   `Vec`. Decoding never panics on arbitrary input; malformed bytes yield
//!   [`ChunkError::Corrupt`].
//!
//! * [`encode_stored`] / [`decode_stored`] / [`reopen_stored`]: the form a
//!   chunk takes on disk (see [`stored`](crate::stored) for why it differs).
//!
//! Values roundtrip bit-exactly (every NaN payload, including Prometheus'
//! stale marker, signed zeros, infinities, subnormals). Timestamps must be
//! strictly increasing; any such sequence of `i64`s roundtrips, since all
//! delta arithmetic is done modulo 2^64.
//!
//! # Byte layout
//!
//! ```text
//! +----------------------+------------------------------------------------+
//! | sample count: u16 BE | bitstream (MSB-first, zero-padded to a byte)   |
//! +----------------------+------------------------------------------------+
//! ```
//!
//! The bitstream holds the samples back to back, with no alignment:
//!
//! * **Sample 0:** timestamp `t0` as a zig-zag signed varint (Go
//!   `PutVarint`), then the value's 64 raw IEEE-754 bits.
//! * **Sample 1:** the delta `t1 - t0` as an unsigned varint (Go
//!   `PutUvarint`), then the value XOR-encoded (below).
//! * **Sample n ≥ 2:** the delta-of-delta `dod = (tn - tn-1) - (tn-1 - tn-2)`
//!   in the first bucket whose range holds it, then the XOR-encoded value:
//!
//!   | prefix | payload            | range of `dod`           |
//!   |--------|--------------------|--------------------------|
//!   | `0`    | –                  | `0`                      |
//!   | `10`   | 14 bits, two's c.  | `-(2^13 - 1) ..= 2^13`   |
//!   | `110`  | 17 bits, two's c.  | `-(2^16 - 1) ..= 2^16`   |
//!   | `1110` | 20 bits, two's c.  | `-(2^19 - 1) ..= 2^19`   |
//!   | `1111` | 64 bits            | anything else            |
//!
//!   (The asymmetric ranges are Prometheus'; an `n`-bit payload greater than
//!   `2^(n-1)` is negative.)
//!
//! **XOR value encoding**, with `x = bits(v) ^ bits(previous v)`:
//!
//! * `0` — `x == 0`, the value repeats.
//! * `10` + meaningful bits — `x` fits in the window of the previous
//!   `(leading, trailing)` zero counts; writes `64 - leading - trailing`
//!   bits of `x >> trailing`.
//! * `11` + 5 bits `leading` (clamped to 31) + 6 bits meaningful-bit count
//!   (64 is written as 0) + the meaningful bits; this window is then reused.
//!
//! Varints occupy whole 8-bit groups but start at any bit offset.

mod bitstream;
mod decoder;
mod encoder;
mod stored;

pub use decoder::{ChunkIter, decode, iter};
pub use encoder::ChunkEncoder;
pub use stored::{decode_stored, encode_stored, reopen_stored};

/// Number of samples a chunk should hold before the caller cuts a new one.
/// The format allows up to `u16::MAX` samples; this is only a target.
pub const TARGET_SAMPLES: usize = 120;

/// Size of the sample-count header in bytes.
const HEADER_LEN: usize = 2;

/// Errors produced while encoding or decoding a chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The bytes are not a valid chunk (truncated, garbage, trailing data).
    #[error("corrupt chunk: {0}")]
    Corrupt(String),
    /// A sample's timestamp is not strictly greater than the last one.
    #[error("out-of-order sample: timestamp {t} is not after last timestamp {last}")]
    OutOfOrder {
        /// Timestamp of the last sample in the chunk.
        last: i64,
        /// Timestamp that was rejected.
        t: i64,
    },
    /// The chunk already holds `u16::MAX` samples, the most the header allows.
    #[error("chunk is full ({} samples)", u16::MAX)]
    TooManySamples,
}

/// The delta-of-delta buckets: prefix bits, prefix width, payload width.
/// A zero `dod` is the single bit `0` and is handled separately.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// Prefix (`1111`, 4 bits) of a delta-of-delta stored as a full 64 bits.
const DOD_WIDE_PREFIX: (u64, u32) = (0b1111, 4);

/// Whether `dod` fits Prometheus' `nbits`-wide bucket:
/// `-(2^(nbits-1) - 1) ..= 2^(nbits-1)`.
fn dod_fits(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= dod && dod <= half
}

/// The leading/trailing zero window of the XOR encoding, shared by the
/// encoder and the decoder so that both evolve it identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct XorWindow {
    /// Leading zero bits, at most 31 (fits 5 bits).
    leading: u32,
    /// Trailing zero bits.
    trailing: u32,
}

impl XorWindow {
    /// Number of meaningful bits inside the window, in `1..=64`.
    fn meaningful_bits(self) -> u32 {
        64 - self.leading - self.trailing
    }
}

#[cfg(test)]
mod tests;
