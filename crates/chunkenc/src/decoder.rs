//! Decoding chunks. Every read is bounds-checked and all arithmetic on
//! decoded numbers wraps, so arbitrary input yields an error, never a panic.

use std::iter::FusedIterator;

use crate::bitstream::BitReader;
use crate::{ChunkError, DOD_BUCKETS, HEADER_LEN, XorWindow};

/// Decodes a whole chunk into its samples.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let it = iter(bytes);
    // Every sample after the first takes at least two bits, so a garbage
    // header cannot make us reserve much more than the input justifies.
    let capacity = it.size_hint().1.unwrap_or(0).min(bytes.len() * 4 + 1);
    let mut samples = Vec::with_capacity(capacity);
    for sample in it {
        samples.push(sample?);
    }
    Ok(samples)
}

/// Lazily decodes the samples of a chunk.
pub fn iter(bytes: &[u8]) -> ChunkIter<'_> {
    ChunkIter::new(bytes)
}

/// Decoder state carried from one sample to the next. It mirrors the
/// encoder's, which is what lets [`crate::ChunkEncoder::from_bytes`] resume.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DecodeState {
    /// Last timestamp.
    pub(crate) t: i64,
    /// Last timestamp delta, modulo 2^64.
    pub(crate) delta: u64,
    /// Raw bits of the last value.
    pub(crate) v: u64,
    /// Current XOR window, if one was established.
    pub(crate) window: Option<XorWindow>,
}

/// Iterator over the samples of an encoded chunk.
///
/// Yields `Ok((t, v))` for each sample in order. On malformed input it yields
/// the samples decoded so far followed by a single `Err`, then ends.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    reader: BitReader<'a>,
    /// Sample count from the header.
    total: u16,
    /// Samples still to decode.
    remaining: u16,
    /// An error detected up front (bad header), reported on the first call.
    pending_error: Option<String>,
    state: DecodeState,
}

impl<'a> ChunkIter<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let mut it = Self {
            reader: BitReader::new(bytes.get(HEADER_LEN..).unwrap_or_default()),
            total: 0,
            remaining: 0,
            pending_error: None,
            state: DecodeState::default(),
        };
        match bytes.first_chunk::<HEADER_LEN>() {
            None => it.pending_error = Some("missing sample count header".into()),
            Some(&header) => {
                it.total = u16::from_be_bytes(header);
                it.remaining = it.total;
                if it.total == 0 && bytes.len() > HEADER_LEN {
                    it.pending_error = Some("data after an empty chunk's header".into());
                }
            }
        }
        it
    }

    /// Sample count declared by the header.
    pub(crate) fn header_count(&self) -> u16 {
        self.total
    }

    /// Bits of bitstream consumed so far, including the header.
    pub(crate) fn bit_pos(&self) -> usize {
        HEADER_LEN * 8 + self.reader.bit_pos()
    }

    /// State after the last decoded sample.
    pub(crate) fn state(&self) -> DecodeState {
        self.state
    }

    /// Decodes the sample at `index` (counted from 0) and updates the state.
    fn decode_sample(&mut self, index: u16) -> Result<(i64, f64), ChunkError> {
        let r = &mut self.reader;
        let s = &mut self.state;
        if index == 0 {
            s.t = r.read_varint()?;
            s.v = r.read_bits(64)?;
            return Ok((s.t, f64::from_bits(s.v)));
        }

        s.delta = if index == 1 { r.read_uvarint()? } else { s.delta.wrapping_add(read_dod(r)? as u64) };
        let t = s.t.wrapping_add(s.delta as i64);
        if t <= s.t {
            return Err(ChunkError::Corrupt(format!("timestamp {t} of sample {index} is not after {}", s.t)));
        }
        s.t = t;
        read_value(r, s)?;
        Ok((s.t, f64::from_bits(s.v)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(msg) = self.pending_error.take() {
            self.remaining = 0;
            return Some(Err(ChunkError::Corrupt(msg)));
        }
        if self.remaining == 0 {
            return None;
        }

        let index = self.total - self.remaining;
        let result = self.decode_sample(index).and_then(|sample| {
            if self.remaining == 1 && !self.reader.only_padding_left() {
                return Err(ChunkError::Corrupt("trailing data after the last sample".into()));
            }
            Ok(sample)
        });
        // An error ends the iteration.
        self.remaining = if result.is_ok() { self.remaining - 1 } else { 0 };
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.pending_error.is_some() {
            return (1, Some(1));
        }
        // An error replaces the sample it was found in, so there are at most
        // `remaining` items, and at least one if any are left.
        let remaining = usize::from(self.remaining);
        (remaining.min(1), Some(remaining))
    }
}

impl FusedIterator for ChunkIter<'_> {}

/// Reads a delta-of-delta: a unary bucket prefix (`0`, `10`, `110`, `1110`
/// or `1111`), then the payload of the selected bucket's width.
fn read_dod(r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    if !r.read_bit()? {
        return Ok(0);
    }
    for (_, _, payload_bits) in DOD_BUCKETS {
        if !r.read_bit()? {
            return read_signed(r, payload_bits);
        }
    }
    // Prefix `1111`: a full 64-bit delta-of-delta.
    Ok(r.read_bits(64)? as i64)
}

/// Reads an `nbits`-wide payload in Prometheus' asymmetric two's complement:
/// values above `2^(nbits-1)` are negative.
fn read_signed(r: &mut BitReader<'_>, nbits: u32) -> Result<i64, ChunkError> {
    let bits = r.read_bits(nbits)?;
    let value = if bits > 1 << (nbits - 1) { bits.wrapping_sub(1 << nbits) } else { bits };
    Ok(value as i64)
}

/// Reads an XOR-encoded value into `s.v`, updating the window.
fn read_value(r: &mut BitReader<'_>, s: &mut DecodeState) -> Result<(), ChunkError> {
    if !r.read_bit()? {
        return Ok(()); // Value repeats.
    }
    let window = if r.read_bit()? {
        // `read_bits(5)` and `read_bits(6)` are < 64, so these fit a u32.
        let leading = r.read_bits(5)? as u32;
        let meaningful = match r.read_bits(6)? as u32 {
            0 => 64,
            n => n,
        };
        let trailing = 64u32.checked_sub(leading + meaningful).ok_or_else(|| {
            ChunkError::Corrupt(format!("XOR window of {leading} leading and {meaningful} meaningful bits exceeds 64"))
        })?;
        let w = XorWindow { leading, trailing };
        s.window = Some(w);
        w
    } else {
        s.window.ok_or_else(|| ChunkError::Corrupt("XOR window reused before one was established".into()))?
    };
    // `meaningful >= 1`, so `trailing <= 63` and the shift cannot overflow.
    s.v ^= r.read_bits(window.meaningful_bits())? << window.trailing;
    Ok(())
}
