//! Byte layout of the RocksDB keys (documented in docs/storage-format.md).
//!
//! - `series`:   series id (u64 BE) → tenant, 0xff, canonical label encoding
//! - `postings`: tenant 0xff partition (8 bytes) name 0xff value 0xff
//!   series id (u64 BE) → empty; every series also has, in every partition
//!   it has samples in, the "all" posting with an empty name and value
//! - `chunks`:   partition (8 bytes), series id (u64 BE), min time (8 bytes)
//!   → max time (i64 LE), stored chunk (`pharos_chunkenc::encode_stored`)
//! - `wal`:      sequence number (u64 BE) → a WAL record (see `wal.rs`)
//! - `meta`:     ASCII keys → values
//!
//! Signed numbers (partitions, times) are stored big-endian with the sign
//! bit flipped, so byte order is numeric order. 0xff never occurs in UTF-8,
//! so it separates strings unambiguously.

pub const SEP: u8 = 0xff;

/// Length of a partition time window: like Prometheus's 2 h head blocks.
pub const PARTITION_MS: i64 = 2 * 3600 * 1000;

/// The partition holding timestamp `t`.
pub fn partition_of(t: i64) -> i64 {
    t.div_euclid(PARTITION_MS)
}

pub fn flip(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn unflip(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

pub fn series_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Start of a tenant's postings in `partition`.
pub fn tenant_partition_prefix(tenant: &str, partition: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 9);
    k.extend_from_slice(tenant.as_bytes());
    k.push(SEP);
    k.extend_from_slice(&flip(partition));
    k
}

/// Prefix of every posting of `name` (and `value`, when given).
pub fn postings_prefix(tenant: &str, partition: i64, name: &str, value: Option<&str>) -> Vec<u8> {
    let mut k = tenant_partition_prefix(tenant, partition);
    k.extend_from_slice(name.as_bytes());
    k.push(SEP);
    if let Some(v) = value {
        k.extend_from_slice(v.as_bytes());
        k.push(SEP);
    }
    k
}

#[cfg(test)]
pub fn posting_key(tenant: &str, partition: i64, name: &str, value: &str, id: u64) -> Vec<u8> {
    let mut k = Vec::new();
    posting_key_into(&mut k, tenant, partition, name.as_bytes(), value.as_bytes(), id);
    k
}

/// [`posting_key`] into a reused buffer, from raw name and value bytes (as
/// they sit in a label encoding): new series write several postings each,
/// and this keeps that path free of allocations.
pub fn posting_key_into(k: &mut Vec<u8>, tenant: &str, partition: i64, name: &[u8], value: &[u8], id: u64) {
    k.clear();
    k.extend_from_slice(tenant.as_bytes());
    k.push(SEP);
    k.extend_from_slice(&flip(partition));
    k.extend_from_slice(name);
    k.push(SEP);
    k.extend_from_slice(value);
    k.push(SEP);
    k.extend_from_slice(&id.to_be_bytes());
}

/// The (name, value) pairs of a canonical label encoding
/// (`name 0xff value 0xff ...`), without decoding it.
pub fn encoded_pairs(encoded: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let body = encoded.strip_suffix(&[SEP]).unwrap_or_default();
    let mut parts = body.split(|b| *b == SEP).filter(move |_| !body.is_empty());
    std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
}

/// Splits the part of a posting key after `postings_prefix(.., name, None)`
/// into its value and series id.
pub fn split_posting(rest: &[u8]) -> Option<(&[u8], u64)> {
    if rest.len() < 9 {
        return None;
    }
    let (value, tail) = rest.split_at(rest.len() - 9);
    let (sep, id) = tail.split_first()?;
    (*sep == SEP).then_some(())?;
    Some((value, u64::from_be_bytes(id.try_into().ok()?)))
}

/// Prefix of the chunks of one series in one partition.
pub fn chunk_prefix(partition: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&flip(partition));
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn chunk_key(id: u64, min_t: i64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&chunk_prefix(partition_of(min_t), id));
    k[16..].copy_from_slice(&flip(min_t));
    k
}

/// The min time stored in a chunk key.
pub fn chunk_key_min_t(key: &[u8]) -> Option<i64> {
    unflip(key.get(16..24)?)
}

pub fn chunk_value(max_t: i64, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + chunk.len());
    v.extend_from_slice(&max_t.to_le_bytes());
    v.extend_from_slice(chunk);
    v
}

/// Splits a chunk value into its max time and chunk bytes.
pub fn split_chunk_value(v: &[u8]) -> Option<(i64, &[u8])> {
    let (t, rest) = v.split_at_checked(8)?;
    Some((i64::from_le_bytes(t.try_into().ok()?), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_by_partition_then_series_then_time() {
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        for t in times {
            assert_eq!(chunk_key_min_t(&chunk_key(3, t)), Some(t));
        }
        assert!(chunk_key(3, -5) < chunk_key(3, 0));
        assert!(chunk_key(9, 0) < chunk_key(3, PARTITION_MS));
        assert!(chunk_key(3, 1) < chunk_key(3, 2));
        assert!(chunk_key(3, 5).starts_with(&chunk_prefix(0, 3)));
    }

    #[test]
    fn partitions() {
        assert_eq!(partition_of(0), 0);
        assert_eq!(partition_of(-1), -1);
        assert_eq!(partition_of(PARTITION_MS), 1);
    }

    #[test]
    fn pairs_of_an_encoding() {
        let enc = b"__name__\xffup\xffjob\xff\xffx\xffa\xff";
        let pairs: Vec<_> = encoded_pairs(enc).collect();
        assert_eq!(pairs, vec![(&b"__name__"[..], &b"up"[..]), (&b"job"[..], &b""[..]), (&b"x"[..], &b"a"[..])]);
        assert_eq!(encoded_pairs(b"").count(), 0);
    }

    #[test]
    fn posting_split() {
        let k = posting_key("t", 4, "job", "a\u{0}b", 42);
        let p = postings_prefix("t", 4, "job", None);
        assert_eq!(split_posting(&k[p.len()..]), Some((&b"a\0b"[..], 42)));
    }
}
