//! Blob formats. Every blob is stored with a format number (the `fmt` column) so a later
//! memwarden can change the encoding and still read old rows.
//!
//! Format 1: zstd-compressed JSON. A `recent` row holds one `Sample`; a block holds a JSON array
//! of samples, oldest first. JSON (not a binary serde format) because the model grows: a field
//! added later is absent from old rows and takes its `#[serde(default)]`, and a field removed
//! later is ignored. Blocks are compressed with a window larger than the block, so each sample
//! is coded mostly as references to the one before it.

use std::io::{Read, Write};

use serde_json::Value;

pub const FORMAT_ZSTD_JSON: i64 = 1;

/// Level for one sample written on append: cheap, the row lives only until `maintain`.
const ROW_LEVEL: i32 = 3;
/// Level for blocks: written once, read rarely.
pub const BLOCK_LEVEL: i32 = 9;
/// 2^24 = 16 MiB window: a whole block (10 minutes of samples, ~3 MiB of JSON) fits in it.
const BLOCK_WINDOW_LOG: u32 = 24;

pub fn compress_row(json: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(json, ROW_LEVEL)
}

/// Compress a block from the JSON texts of its samples, oldest first.
pub fn compress_block<'a>(
    samples: impl IntoIterator<Item = &'a [u8]>,
    level: i32,
) -> std::io::Result<Vec<u8>> {
    let mut block = BlockWriter::new(level)?;
    for s in samples {
        block.push(s)?;
    }
    block.finish()
}

/// A block compressed as its samples come, so that only one sample's JSON need be in memory
/// (a 10-minute block of 100 VMs every 2 s is ~30 MiB of JSON).
pub struct BlockWriter {
    enc: zstd::stream::Encoder<'static, Vec<u8>>,
    samples: usize,
}

impl BlockWriter {
    pub fn new(level: i32) -> std::io::Result<BlockWriter> {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), level)?;
        enc.window_log(BLOCK_WINDOW_LOG)?;
        enc.long_distance_matching(true)?;
        enc.write_all(b"[")?;
        Ok(BlockWriter { enc, samples: 0 })
    }

    /// Appends one sample's JSON text.
    pub fn push(&mut self, json: &[u8]) -> std::io::Result<()> {
        if self.samples > 0 {
            self.enc.write_all(b",")?;
        }
        self.samples += 1;
        self.enc.write_all(json)
    }

    pub fn finish(mut self) -> std::io::Result<Vec<u8>> {
        self.enc.write_all(b"]")?;
        self.enc.finish()
    }
}

pub fn decompress(blob: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::Decoder::new(blob)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Decode a block into its samples' JSON values.
pub fn decode_block(fmt: i64, blob: &[u8]) -> Result<Vec<Value>, String> {
    check_format(fmt)?;
    let json = decompress(blob).map_err(|e| format!("zstd: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("JSON: {e}"))
}

/// Decode one `recent` row into the sample's JSON text.
pub fn decode_row(fmt: i64, blob: &[u8]) -> Result<Vec<u8>, String> {
    check_format(fmt)?;
    decompress(blob).map_err(|e| format!("zstd: {e}"))
}

fn check_format(fmt: i64) -> Result<(), String> {
    if fmt == FORMAT_ZSTD_JSON {
        Ok(())
    } else {
        Err(format!(
            "format {fmt} is unknown to this memwarden (it knows {FORMAT_ZSTD_JSON})"
        ))
    }
}
