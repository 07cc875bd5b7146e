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
        Ok(Box::new(self.stream_encoder(w, level, threads)?))
    }

    /// The same, as a concrete type whose `finish` gives the inner writer back (a backup stream
    /// still has to commit or close what it wrote into).
    pub fn stream_encoder<W: Write>(
        self,
        w: W,
        level: i32,
        threads: u32,
    ) -> io::Result<StreamEncoder<W>> {
        Ok(match self {
            Compression::None => StreamEncoder::None(w),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                // XXH64 of the original in the frame: the decompressor checks its own output
                // (FORMAT.md, "What a reader checks"); ~1 ms per 16 MiB.
                e.include_checksum(true)?;
                if threads > 1 {
                    e.multithread(threads)?;
                    // A worker's job is 4 windows: 32 MiB at level 19, so the stream was read
                    // (and a base backup's progress moved) in 33-40 MiB steps 10-15 s apart on
                    // two cores. 4 MiB jobs keep it moving; low levels' jobs are smaller already.
                    if level >= 10 {
                        e.set_parameter(zstd::zstd_safe::CParameter::JobSize(4 << 20))?;
                    }
                }
                StreamEncoder::Zstd(e)
            }
            Compression::Bzip2 => StreamEncoder::Bzip2(bzip2::write::BzEncoder::new(
                w,
                bzip2::Compression::new(level as u32),
            )),
        })
    }

    /// The file name suffix of a stream in this compression (`.zst`, `.bz2`, none).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Zstd => ".zst",
            Compression::Bzip2 => ".bz2",
        }
    }

    /// Whether a payload in this compression that starts with `first` checks its own output: zstd
    /// only if the frame header's content checksum flag is set (FORMAT.md, "What a reader checks").
    pub fn payload_checks_itself(self, first: &[u8]) -> bool {
        match self {
            Compression::None | Compression::Bzip2 => true,
            Compression::Zstd => {
                const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
                const CONTENT_CHECKSUM_FLAG: u8 = 0x04;
                first.len() >= 5
                    && first[..4] == ZSTD_MAGIC
                    && first[4] & CONTENT_CHECKSUM_FLAG != 0
            }
        }
    }

    /// Wrap `r` in a decompressing reader (of a backup stream: any number of zstd frames, as
    /// a parallel compressor such as pzstd writes them).
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(r)),
        })
    }

    /// Wrap an object's payload in a decompressing reader. A zstd payload is one frame
    /// (FORMAT.md, "What a reader checks"): only the first frame is decompressed, so every byte
    /// handed over is covered by the checksum whose flag `payload_checks_itself` found in that
    /// frame's header; a frame after it (never written by walship) is not output.
    pub fn payload_decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?.single_frame()),
            other => other.decoder(r)?,
        })
    }
}

/// A compressing writer that must be finished to write its trailer.
pub trait Encoder: Write {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// A compressing writer of any kind; `finish` writes the trailer and returns the inner writer.
pub enum StreamEncoder<W: Write> {
    None(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> StreamEncoder<W> {
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self {
            StreamEncoder::None(w) => w,
            StreamEncoder::Zstd(e) => e.finish()?,
            StreamEncoder::Bzip2(e) => e.finish()?,
        };
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Write for StreamEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamEncoder::None(w) => w.write(buf),
            StreamEncoder::Zstd(e) => e.write(buf),
            StreamEncoder::Bzip2(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            StreamEncoder::None(w) => w.flush(),
            StreamEncoder::Zstd(e) => e.flush(),
            StreamEncoder::Bzip2(e) => e.flush(),
        }
    }
}

impl<W: Write> Encoder for StreamEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish().map(drop)
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
            assert!(c.payload_checks_itself(&out), "{c:?}");
            assert_eq!(Compression::from_code(c.code()), Some(c));
            assert_eq!(Compression::parse(c.name()).unwrap(), c);
        }
        assert!(Compression::from_code(3).is_none());
        let unchecked = zstd::encode_all(&data[..], 1).unwrap();
        assert!(!Compression::Zstd.payload_checks_itself(&unchecked));
        assert!(!Compression::Zstd.payload_checks_itself(b"\x28\xb5"));
        assert!(Compression::Zstd.check_level(99).is_err());
        assert!(Compression::Bzip2.check_level(0).is_err());
    }

    #[test]
    fn zstd_finds_a_damaged_byte_in_its_output_by_its_checksum() {
        // What the content checksum is for: the stored bytes are intact, yet the output differs
        // from what was compressed. Flipping a bit of the checksum itself stands in for that.
        let data = vec![7u8; 100_000];
        let mut out = Vec::new();
        let mut e = Compression::Zstd.encoder(&mut out, 1, 1).unwrap();
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        let last = out.len() - 1;
        out[last] ^= 1;
        let mut back = Vec::new();
        let r = Compression::Zstd
            .decoder(&out[..])
            .unwrap()
            .read_to_end(&mut back);
        assert!(r.is_err(), "a wrong content checksum went unnoticed");
    }
}
