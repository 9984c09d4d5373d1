//! Bit-granular writer and reader used by the chunk codec.
//!
//! Bits are packed most-significant-bit first: the first bit written lands in
//! bit 7 of byte 0, the ninth in bit 7 of byte 1, and so on. This matches the
//! `bstream` type of Prometheus, so chunks are bit-compatible with it.
//!
//! Varints are written *into the bit stream* (not byte-aligned), one 8-bit
//! group per encoded byte, exactly like Prometheus does for the first
//! timestamp and the first timestamp delta. The varint flavours are Go's
//! `encoding/binary` ones: LEB128 for unsigned, zig-zag + LEB128 for signed.

use crate::ChunkError;

/// Maximum length in bytes of a LEB128-encoded `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Append-only bit writer backed by a `Vec<u8>`.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Number of still-unused low-order bits in the last byte of `buf`
    /// (0 when `buf` is empty or its last byte is full).
    free: u32,
}

impl BitWriter {
    /// Creates an empty writer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity), free: 0 }
    }

    /// Resumes writing after the first `bit_len` bits of `bytes`.
    ///
    /// Any bytes beyond the first `ceil(bit_len / 8)` are dropped and the
    /// unused low bits of the last kept byte are cleared, so appended bits
    /// can be OR-ed in.
    pub(crate) fn resume(bytes: &[u8], bit_len: usize) -> Self {
        let byte_len = bit_len.div_ceil(8).min(bytes.len());
        let mut buf = Vec::with_capacity(byte_len.max(64));
        buf.extend_from_slice(bytes.get(..byte_len).unwrap_or(bytes));
        // `bit_len % 8` is in 0..8, so this fits a u32 trivially.
        let used = (bit_len % 8) as u32;
        let free = if used == 0 { 0 } else { 8 - used };
        if let Some(last) = buf.last_mut() {
            *last &= low_mask_u8(free) ^ 0xff;
        }
        Self { buf, free }
    }

    /// The bytes written so far; a partially filled last byte is zero-padded.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access to the written bytes, used to patch the chunk header.
    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Writes a single bit.
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `nbits` bits of `value`, most significant first.
    /// Bits of `value` above `nbits` are ignored.
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        let mut remaining = nbits;
        while remaining > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = remaining.min(self.free);
            // The next `take` bits of `value`, right-aligned; `take <= 8`.
            let chunk = (value >> (remaining - take)) as u8 & low_mask_u8(take);
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
            remaining -= take;
        }
    }

    /// Writes `value` as an unsigned LEB128 varint (Go `PutUvarint`).
    pub(crate) fn write_uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.write_bits((value & 0x7f) | 0x80, 8);
            value >>= 7;
        }
        self.write_bits(value, 8);
    }

    /// Writes `value` as a zig-zag signed varint (Go `PutVarint`).
    pub(crate) fn write_varint(&mut self, value: i64) {
        let zigzag = ((value as u64) << 1) ^ ((value >> 63) as u64);
        self.write_uvarint(zigzag);
    }
}

/// Bit reader over a borrowed byte slice. Never panics: every read past the
/// end of the data returns [`ChunkError::Corrupt`].
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position of the next bit to read, counted from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Number of bits consumed so far.
    pub(crate) fn bit_pos(&self) -> usize {
        self.pos
    }

    /// Checks that nothing but zero padding up to the next byte boundary
    /// follows the current position.
    pub(crate) fn only_padding_left(&self) -> bool {
        let consumed_bytes = self.pos.div_ceil(8);
        if consumed_bytes != self.data.len() {
            return false;
        }
        // `pos % 8` is in 0..8; when non-zero, the last byte has padding.
        let used = (self.pos % 8) as u32;
        match self.data.last() {
            Some(&last) if used != 0 => last & low_mask_u8(8 - used) == 0,
            _ => true,
        }
    }

    /// Reads one bit.
    pub(crate) fn read_bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Reads `nbits` (at most 64) bits as a right-aligned integer.
    pub(crate) fn read_bits(&mut self, nbits: u32) -> Result<u64, ChunkError> {
        debug_assert!(nbits <= 64);
        let available = self.data.len().saturating_mul(8).saturating_sub(self.pos);
        if (nbits as usize) > available {
            return Err(eof());
        }
        let mut out = 0u64;
        let mut remaining = nbits;
        while remaining > 0 {
            let byte = *self.data.get(self.pos / 8).ok_or_else(eof)?;
            // Bits of `byte` not yet consumed, in 1..=8.
            let avail = 8 - (self.pos % 8) as u32;
            let take = remaining.min(avail);
            let bits = (byte >> (avail - take)) & low_mask_u8(take);
            // `take <= 8`, so neither shift can overflow.
            out = (out << take) | u64::from(bits);
            self.pos += take as usize;
            remaining -= take;
        }
        Ok(out)
    }

    /// Reads an unsigned LEB128 varint (Go `ReadUvarint` semantics,
    /// including its overflow check on the tenth byte).
    pub(crate) fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.read_bits(8)?;
            if byte < 0x80 {
                if i == MAX_VARINT_LEN - 1 && byte > 1 {
                    break;
                }
                return Ok(value | (byte << shift));
            }
            value |= (byte & 0x7f) << shift;
            shift += 7;
        }
        Err(ChunkError::Corrupt("varint overflows 64 bits".into()))
    }

    /// Reads a zig-zag signed varint (Go `ReadVarint`).
    pub(crate) fn read_varint(&mut self) -> Result<i64, ChunkError> {
        let zigzag = self.read_uvarint()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }
}

/// A mask with the low `n` bits set, for `n` in `0..=8`.
fn low_mask_u8(n: u32) -> u8 {
    ((1u16 << n) - 1) as u8
}

fn eof() -> ChunkError {
    ChunkError::Corrupt("unexpected end of chunk data".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_roundtrip_across_byte_boundaries() {
        let fields: &[(u64, u32)] = &[
            (1, 1),
            (0b101, 3),
            (0x3fff, 14),
            (0, 5),
            (u64::MAX, 64),
            (0x1_2345, 17),
            (0xdead_beef_cafe_f00d, 64),
            (0, 1),
            (0xabcde, 20),
        ];
        let mut w = BitWriter::default();
        for &(v, n) in fields {
            w.write_bits(v, n);
        }
        let total: u32 = fields.iter().map(|&(_, n)| n).sum();
        assert_eq!(w.as_bytes().len(), total.div_ceil(8) as usize);

        let mut r = BitReader::new(w.as_bytes());
        for &(v, n) in fields {
            assert_eq!(r.read_bits(n).unwrap(), v, "field of {n} bits");
        }
        assert!(r.only_padding_left());
        assert!(r.read_bits(8).is_err());
    }

    #[test]
    fn high_bits_beyond_width_are_ignored() {
        let mut w = BitWriter::default();
        w.write_bits(u64::MAX, 3);
        w.write_bits(0, 5);
        assert_eq!(w.as_bytes(), &[0b1110_0000]);
    }

    #[test]
    fn varints_match_go_encoding() {
        let mut w = BitWriter::default();
        w.write_uvarint(300);
        assert_eq!(w.as_bytes(), &[0xac, 0x02]);

        let mut w = BitWriter::default();
        w.write_varint(-1);
        w.write_varint(1);
        assert_eq!(w.as_bytes(), &[0x01, 0x02]);
    }

    #[test]
    fn varints_roundtrip_unaligned() {
        let unsigned = [0, 1, 127, 128, 1 << 35, u64::MAX];
        let signed = [0, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000];
        let mut w = BitWriter::default();
        w.write_bit(true); // Misalign everything that follows.
        for &u in &unsigned {
            w.write_uvarint(u);
        }
        for &s in &signed {
            w.write_varint(s);
        }
        let mut r = BitReader::new(w.as_bytes());
        assert!(r.read_bit().unwrap());
        for &u in &unsigned {
            assert_eq!(r.read_uvarint().unwrap(), u);
        }
        for &s in &signed {
            assert_eq!(r.read_varint().unwrap(), s);
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02);
        assert!(BitReader::new(&bytes).read_uvarint().is_err());
        assert!(BitReader::new(&[0x80; 11]).read_uvarint().is_err());
        assert!(BitReader::new(&[0x80]).read_uvarint().is_err());
    }

    #[test]
    fn resume_continues_mid_byte() {
        let mut w = BitWriter::default();
        w.write_bits(0b1011, 4);
        // Pretend garbage followed in the stored copy; it must be dropped.
        let mut stored = w.as_bytes().to_vec();
        stored[0] |= 0b0000_0111;
        stored.push(0xff);
        let mut w = BitWriter::resume(&stored, 4);
        w.write_bits(0b0110_0001, 8);
        assert_eq!(w.as_bytes(), &[0b1011_0110, 0b0001_0000]);
    }
}
