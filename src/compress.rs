//! Compression as stream filters around storage writers and readers: zstd (the default), bzip2
//! (for those who want the seed recipe's format), or none. The code byte each one has in an object
//! header is defined here and in FORMAT.md, nowhere else.

use std::io::{self, Read, Write};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Bzip2,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Compression> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" | "zst" => Ok(Compression::Zstd),
            "bzip2" | "bz2" => Ok(Compression::Bzip2),
            _ => Err(Error::usage(format!(
                "unknown compression {s:?}; use zstd, bzip2 or none"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// The code stored in an object header (FORMAT.md, "Objects").
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Bzip2 => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Compression> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Bzip2),
            _ => None,
        }
    }

    /// The level used when none is configured: zstd 1 (fast; WAL compresses ~4x even so) and
    /// bzip2 9 (bzip2's own default).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 1,
            Compression::Bzip2 => 9,
            Compression::None => 0,
        }
    }

    pub fn check_level(self, level: i32) -> Result<()> {
        let ok = match self {
            Compression::Zstd => zstd::compression_level_range().contains(&level),
            Compression::Bzip2 => (1..=9).contains(&level),
            Compression::None => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::usage(format!(
                "compression level {level} is out of range for {}",
                self.name()
            )))
        }
    }

    /// Wrap `w` in a compressing writer. `threads` > 1 lets zstd compress one file on several
    /// cores while the caller hashes.
    pub fn encoder<'a, W: Write + 'a>(
        self,
        w: W,
        level: i32,
        threads: u32,
    ) -> io::Result<Box<dyn Encoder + 'a>> {
        Ok(match self {
            Compression::None => Box::new(Plain(w)),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                if threads > 1 {
                    e.multithread(threads)?;
                }
                Box::new(e)
            }
            Compression::Bzip2 => Box::new(bzip2::write::BzEncoder::new(
                w,
                bzip2::Compression::new(level as u32),
            )),
        })
    }

    /// Wrap `r` in a decompressing reader.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(r)),
        })
    }
}

/// A compressing writer that must be finished to write its trailer.
pub trait Encoder: Write {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Encoder for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Encoder for zstd::stream::write::Encoder<'_, W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write> Encoder for bzip2::write::BzEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compression::None, Compression::Zstd, Compression::Bzip2] {
            let mut out = Vec::new();
            let mut e = c.encoder(&mut out, c.default_level(), 2).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap();
            if c != Compression::None {
                assert!(out.len() < data.len() / 2, "{c:?} did not compress");
            }
            let mut back = Vec::new();
            c.decoder(&out[..]).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c:?}");
            assert_eq!(Compression::from_code(c.code()), Some(c));
            assert_eq!(Compression::parse(c.name()).unwrap(), c);
        }
        assert!(Compression::from_code(3).is_none());
        assert!(Compression::Zstd.check_level(99).is_err());
        assert!(Compression::Bzip2.check_level(0).is_err());
    }
}
