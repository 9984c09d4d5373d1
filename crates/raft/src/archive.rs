//! The snapshot archive: the files of a checkpoint directory as one byte
//! stream, which raft sends to a follower in chunks.
//!
//! Format (all integers big endian):
//!
//! ```text
//! magic      b"PHAROS-SNAPSHOT/1\n"            (18 bytes)
//! per file   name length: u16 (> 0)
//!            name: UTF-8, a plain file name (no '/', not '.' or '..')
//!            data length: u64
//!            data
//! end        u16 0
//! ```
//!
//! Files come in name order; nothing may follow the end marker, so a
//! truncated or overlong stream is refused. The sender never builds the
//! archive: a [`Layout`] maps stream offsets onto the header bytes and the
//! checkpoint's files, and [`Layout::read_at`] reads any range of it. The
//! receiver writes the stream to a file and [`unpack`]s it into a directory.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::Error;

pub const MAGIC: &[u8] = b"PHAROS-SNAPSHOT/1\n";

/// One stretch of the archive stream.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Bytes(Vec<u8>),
    File { path: PathBuf, len: u64 },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

/// Where each byte of the archive of a directory comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// (offset in the stream, part), in stream order.
    parts: Vec<(u64, Part)>,
    len: u64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::RaftStorage(format!("snapshot file {}: {e}", path.display()))
}

/// Whether `name` may be a file of an archive.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= u16::MAX as usize
}

impl Layout {
    /// The archive of the regular files directly in `dir`. Their sizes are
    /// taken now: the directory must not change while it is read.
    pub fn of_dir(dir: &Path) -> Result<Self, Error> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let e = e.map_err(|e| io_err(dir, e))?;
            let meta = e.metadata().map_err(|x| io_err(&e.path(), x))?;
            let name = e.file_name();
            // RocksDB's info logs (`LOG`, `LOG.old.*`) are not data, and
            // may still be written to.
            if !meta.is_file() || name.to_string_lossy().starts_with("LOG") {
                continue;
            }
            let name = name.into_string().map_err(|n| {
                Error::RaftStorage(format!("snapshot file name {n:?} in {} is not UTF-8", dir.display()))
            })?;
            if !valid_name(&name) {
                return Err(Error::RaftStorage(format!("snapshot file name {name:?} cannot be archived")));
            }
            files.push((name, e.path(), meta.len()));
        }
        files.sort();
        Ok(Self::of_files(files.into_iter()))
    }

    /// The archive of `(name, path, length)` files, in the order given.
    fn of_files(files: impl Iterator<Item = (String, PathBuf, u64)>) -> Self {
        let mut parts: Vec<Part> = vec![Part::Bytes(MAGIC.to_vec())];
        let header = |parts: &mut Vec<Part>, bytes: &[u8]| match parts.last_mut() {
            Some(Part::Bytes(b)) => b.extend_from_slice(bytes),
            _ => parts.push(Part::Bytes(bytes.to_vec())),
        };
        for (name, path, len) in files {
            let mut h = Vec::with_capacity(name.len() + 10);
            h.extend_from_slice(&(name.len() as u16).to_be_bytes());
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(&len.to_be_bytes());
            header(&mut parts, &h);
            if len > 0 {
                parts.push(Part::File { path, len });
            }
        }
        header(&mut parts, &0u16.to_be_bytes());
        let mut at = 0;
        let parts = parts
            .into_iter()
            .map(|p| {
                let start = at;
                at += p.len();
                (start, p)
            })
            .collect();
        Self { parts, len: at }
    }

    /// Bytes in the whole stream.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `max` bytes of the stream from offset `pos` (fewer only at the
    /// end). Blocking file I/O.
    pub fn read_at(&self, pos: u64, max: usize) -> Result<Vec<u8>, Error> {
        let end = self.len.min(pos.saturating_add(max as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(pos) as usize);
        // The part holding `pos`: the last one starting at or before it.
        let first = self.parts.partition_point(|(start, _)| *start <= pos).saturating_sub(1);
        let mut at = pos;
        for (start, part) in &self.parts[first..] {
            if at >= end {
                break;
            }
            let (from, to) = (at - start, (end - start).min(part.len()));
            match part {
                Part::Bytes(b) => out.extend_from_slice(&b[from as usize..to as usize]),
                Part::File { path, .. } => {
                    let f = File::open(path).map_err(|e| io_err(path, e))?;
                    let n = (to - from) as usize;
                    let old = out.len();
                    out.resize(old + n, 0);
                    f.read_exact_at(&mut out[old..], from).map_err(|e| io_err(path, e))?;
                }
            }
            at = start + to;
        }
        Ok(out)
    }
}

fn read_u16(r: &mut impl Read) -> std::io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// Unpacks the archive in file `archive` into directory `dir` (created;
/// it must not exist), each file fsynced. Returns the bytes unpacked.
pub fn unpack(archive: &Path, dir: &Path) -> Result<u64, Error> {
    let bad = |why: String| Error::RaftStorage(format!("snapshot archive {}: {why}", archive.display()));
    let mut r = BufReader::with_capacity(1 << 20, File::open(archive).map_err(|e| io_err(archive, e))?);
    let mut magic = vec![0; MAGIC.len()];
    r.read_exact(&mut magic).map_err(|e| bad(format!("no header: {e}")))?;
    if magic != MAGIC {
        return Err(bad("not a Pharos snapshot".into()));
    }
    std::fs::create_dir(dir).map_err(|e| io_err(dir, e))?;
    let mut total = 0;
    loop {
        let n = read_u16(&mut r).map_err(|e| bad(format!("truncated: {e}")))? as usize;
        if n == 0 {
            break;
        }
        let mut name = vec![0; n];
        r.read_exact(&mut name).map_err(|e| bad(format!("truncated: {e}")))?;
        let name = String::from_utf8(name).map_err(|_| bad("a file name is not UTF-8".into()))?;
        if !valid_name(&name) {
            return Err(bad(format!("file name {name:?} is not a plain name")));
        }
        let len = read_u64(&mut r).map_err(|e| bad(format!("truncated: {e}")))?;
        let path = dir.join(&name);
        let mut out =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| io_err(&path, e))?;
        let copied = std::io::copy(&mut (&mut r).take(len), &mut out).map_err(|e| io_err(&path, e))?;
        if copied != len {
            return Err(bad(format!("truncated in {name}: {copied} of {len} bytes")));
        }
        out.flush().map_err(|e| io_err(&path, e))?;
        out.sync_all().map_err(|e| io_err(&path, e))?;
        total += len;
    }
    let mut rest = [0; 1];
    if r.read(&mut rest).map_err(|e| io_err(archive, e))? != 0 {
        return Err(bad("data after the end marker".into()));
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(d.path().join(name), data).unwrap();
        }
        d
    }

    fn whole(l: &Layout, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while (out.len() as u64) < l.len() {
            let got = l.read_at(out.len() as u64, chunk).unwrap();
            assert!(!got.is_empty());
            out.extend(got);
        }
        out
    }

    #[test]
    fn the_stream_is_the_documented_format() {
        let d = dir_with(&[("b", b"xyz"), ("a", b""), ("CURRENT", b"MANIFEST-1\n"), ("LOG", b"info")]);
        std::fs::create_dir(d.path().join("sub")).unwrap(); // not archived
        let l = Layout::of_dir(d.path()).unwrap();
        let mut want = MAGIC.to_vec();
        for (name, data) in [("CURRENT", &b"MANIFEST-1\n"[..]), ("a", b""), ("b", b"xyz")] {
            want.extend((name.len() as u16).to_be_bytes());
            want.extend(name.as_bytes());
            want.extend((data.len() as u64).to_be_bytes());
            want.extend(data);
        }
        want.extend([0, 0]);
        assert_eq!(l.len(), want.len() as u64);
        for chunk in [1, 2, 7, 1000] {
            assert_eq!(whole(&l, chunk), want, "read in chunks of {chunk}");
        }
        assert!(l.read_at(l.len(), 10).unwrap().is_empty());
        assert_eq!(l.read_at(3, 4).unwrap(), want[3..7]);
    }

    #[test]
    fn unpack_gives_back_the_files_and_refuses_damage() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let d = dir_with(&[("000012.sst", &big), ("OPTIONS-7", b"opts"), ("empty", b"")]);
        let l = Layout::of_dir(d.path()).unwrap();
        let stream = whole(&l, 4096);
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("a.snap");
        std::fs::write(&archive, &stream).unwrap();
        assert_eq!(unpack(&archive, &out.path().join("x")).unwrap(), big.len() as u64 + 4);
        assert_eq!(std::fs::read(out.path().join("x/000012.sst")).unwrap(), big);
        assert_eq!(std::fs::read(out.path().join("x/OPTIONS-7")).unwrap(), b"opts");
        assert!(out.path().join("x/empty").exists());

        std::fs::write(&archive, &stream[..stream.len() - 1]).unwrap();
        assert!(unpack(&archive, &out.path().join("truncated")).is_err());
        let mut longer = stream.clone();
        longer.push(0);
        std::fs::write(&archive, &longer).unwrap();
        assert!(unpack(&archive, &out.path().join("overlong")).is_err());
        let mut evil = MAGIC.to_vec();
        evil.extend(5u16.to_be_bytes());
        evil.extend(b"../x1");
        evil.extend(0u64.to_be_bytes());
        evil.extend([0, 0]);
        std::fs::write(&archive, &evil).unwrap();
        assert!(unpack(&archive, &out.path().join("evil")).is_err());
        assert!(!out.path().join("x1").exists());
    }
}
