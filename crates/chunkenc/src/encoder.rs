//! Appending samples to a chunk.

use crate::bitstream::BitWriter;
use crate::decoder::ChunkIter;
use crate::{ChunkError, DOD_BUCKETS, DOD_WIDE_PREFIX, HEADER_LEN, XorWindow, dod_fits};

/// Bytes reserved up front: a few samples' worth. The buffer grows as
/// needed; reserving a full chunk's worth for every series would cost
/// hundreds of bytes of memory per series at millions of series.
const INITIAL_CAPACITY: usize = HEADER_LEN + 30;

/// Appends samples to an in-memory XOR chunk.
///
/// [`bytes`](Self::bytes) is a complete, decodable chunk after every append,
/// so it can be persisted at any point and later reopened with
/// [`from_bytes`](Self::from_bytes).
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    /// Header followed by the bitstream.
    stream: BitWriter,
    /// Number of samples, mirrored in the header.
    count: u16,
    /// Timestamp of the first sample (meaningful when `count > 0`).
    first_t: i64,
    /// Timestamp of the last sample (meaningful when `count > 0`).
    last_t: i64,
    /// Last timestamp delta, modulo 2^64 (meaningful when `count > 1`).
    last_delta: u64,
    /// Raw bits of the last value (meaningful when `count > 0`).
    last_v: u64,
    /// Current XOR window; `None` until the first non-repeating value.
    window: Option<XorWindow>,
}

impl ChunkEncoder {
    /// Creates an empty chunk.
    pub fn new() -> Self {
        let mut stream = BitWriter::with_capacity(INITIAL_CAPACITY);
        stream.write_bits(0, 16); // Sample count header.
        Self { stream, count: 0, first_t: 0, last_t: 0, last_delta: 0, last_v: 0, window: None }
    }

    /// Reopens an encoded chunk for further appends (used after restart).
    ///
    /// The chunk is fully decoded to recover the encoder state; any
    /// malformation is reported as [`ChunkError::Corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let mut it = ChunkIter::new(bytes);
        let mut first_t = None;
        for sample in it.by_ref() {
            let (t, _) = sample?;
            first_t.get_or_insert(t);
        }
        let state = it.state();
        Ok(Self {
            stream: BitWriter::resume(bytes, it.bit_pos()),
            count: it.header_count(),
            first_t: first_t.unwrap_or(0),
            last_t: state.t,
            last_delta: state.delta,
            last_v: state.v,
            window: state.window,
        })
    }

    /// Appends a sample. `t` must be strictly greater than the last
    /// timestamp, otherwise [`ChunkError::OutOfOrder`] is returned; a full
    /// chunk returns [`ChunkError::TooManySamples`]. On error the chunk is
    /// left unchanged.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.count == u16::MAX {
            return Err(ChunkError::TooManySamples);
        }
        if self.count > 0 && t <= self.last_t {
            return Err(ChunkError::OutOfOrder { last: self.last_t, t });
        }

        let bits = v.to_bits();
        match self.count {
            0 => {
                self.stream.write_varint(t);
                self.stream.write_bits(bits, 64);
                self.first_t = t;
            }
            1 => {
                // `t > last_t`, so the true delta is in 1..2^64 and the
                // wrapping difference reinterpreted as u64 is exact.
                let delta = t.wrapping_sub(self.last_t) as u64;
                self.stream.write_uvarint(delta);
                self.write_value(bits);
                self.last_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t) as u64;
                self.write_dod(delta.wrapping_sub(self.last_delta) as i64);
                self.write_value(bits);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = bits;
        self.count += 1;
        self.write_header();
        Ok(())
    }

    /// Number of samples in the chunk.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the first sample.
    pub fn min_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_t)
    }

    /// Timestamp of the last sample.
    pub fn max_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_t)
    }

    /// The last sample appended.
    pub fn last(&self) -> Option<(i64, f64)> {
        (self.count > 0).then(|| (self.last_t, f64::from_bits(self.last_v)))
    }

    /// The encoded chunk: always complete and decodable.
    pub fn bytes(&self) -> &[u8] {
        self.stream.as_bytes()
    }

    /// Mirrors `count` into the big-endian header.
    fn write_header(&mut self) {
        if let Some(header) = self.stream.as_mut_bytes().get_mut(..HEADER_LEN) {
            header.copy_from_slice(&self.count.to_be_bytes());
        }
    }

    /// Writes a delta-of-delta into the smallest bucket that holds it.
    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.stream.write_bit(false);
            return;
        }
        for (prefix, prefix_bits, payload_bits) in DOD_BUCKETS {
            if dod_fits(dod, payload_bits) {
                self.stream.write_bits(prefix, prefix_bits);
                // Two's complement truncated to the payload width.
                self.stream.write_bits(dod as u64, payload_bits);
                return;
            }
        }
        let (prefix, prefix_bits) = DOD_WIDE_PREFIX;
        self.stream.write_bits(prefix, prefix_bits);
        self.stream.write_bits(dod as u64, 64);
    }

    /// XOR-encodes `bits` against the previous value.
    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.last_v;
        if xor == 0 {
            self.stream.write_bit(false);
            return;
        }
        self.stream.write_bit(true);

        // Clamp so the count fits the 5-bit field.
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        if let Some(w) = self.window
            && leading >= w.leading
            && trailing >= w.trailing
        {
            // The meaningful bits fit the previous window: reuse it.
            self.stream.write_bit(false);
            self.stream.write_bits(xor >> w.trailing, w.meaningful_bits());
            return;
        }

        let w = XorWindow { leading, trailing };
        self.window = Some(w);
        self.stream.write_bit(true);
        self.stream.write_bits(u64::from(leading), 5);
        // 64 meaningful bits don't fit 6 bits; 0 can't occur (xor != 0), so
        // 64 is written as 0 — the low 6 bits of 64 — and restored on read.
        self.stream.write_bits(u64::from(w.meaningful_bits()), 6);
        self.stream.write_bits(xor >> trailing, w.meaningful_bits());
    }
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}
