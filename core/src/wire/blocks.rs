//! The block stream that deltas and V1 digests travel in (`shared/chitchat-wire.md` 1.6):
//! blocks tagged `1` (one zstd frame) or `2` (raw bytes) with a `u16` length, ended by a `0`
//! tag, whose payloads concatenate into one byte string that items may straddle.
//!
//! It owns the framing, zstd compression and decompression, and the limits that keep decoding
//! bounded: one zstd block inflates to at most [`MAX_BLOCK_DECOMPRESSED`] bytes and a whole
//! stream to at most [`MAX_STREAM_DECOMPRESSED`]. It must never allocate what a frame header
//! claims beyond those limits, never panic on any input, and never emit a compressed block
//! larger than the raw chunk it replaces.
//!
//! libzstd contexts are costly to create (a compression context at level 3 is over a megabyte
//! of fresh memory), so each thread keeps one compressor and one decompressor and reuses them
//! for every stream. They carry no data from one block to the next (every block is a complete
//! frame compressed or decompressed from a reset context), so reuse changes no output.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

use super::codec::Reader;
use super::{
    BLOCK_THRESHOLD, Compression, DecodeError, MAX_BLOCK_DECOMPRESSED, MAX_STREAM_DECOMPRESSED,
};

const TAG_END: u8 = 0;
const TAG_ZSTD: u8 = 1;
const TAG_RAW: u8 = 2;

/// Tag and `u16` length in front of every block.
pub(super) const BLOCK_HEADER_LEN: usize = 3;

/// libzstd's name for `ZSTD_error_dstSize_tooSmall`, as the `zstd` crate reports it.
const DST_TOO_SMALL: &str = "Destination buffer is too small";

/// zstd's level argument `0`: libzstd's default level (3), what chitchat passes.
const ZSTD_LEVEL: i32 = 0;

thread_local! {
    /// This thread's decompression context (created on first use).
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
    /// This thread's compression context: `None` until first used, `Some(None)` if libzstd
    /// could not allocate one (blocks are then written raw).
    static COMPRESSOR: RefCell<Option<Option<Compressor<'static>>>> = const { RefCell::new(None) };
}

/// Reads a block stream up to and including its end tag and returns the concatenated payload.
pub(super) fn read_stream(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    INFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => read_stream_with(r, &mut slot),
        // Only reachable if a stream were read from inside another: use a context of its own.
        Err(_) => read_stream_with(r, &mut None),
    })
}

fn read_stream_with(
    r: &mut Reader<'_>,
    inflater: &mut Option<Inflater>,
) -> Result<Vec<u8>, DecodeError> {
    let mut payload = Vec::new();
    loop {
        let tag = r.u8("block tag")?;
        let block: &[u8] = match tag {
            TAG_END => return Ok(payload),
            TAG_ZSTD => {
                let len = usize::from(r.u16("block length")?);
                let frame = r.take(len, "zstd block")?;
                let inflater = match inflater {
                    Some(inflater) => inflater,
                    None => inflater.insert(Inflater::new()?),
                };
                inflater.inflate(frame)?
            }
            TAG_RAW => {
                let len = usize::from(r.u16("block length")?);
                r.take(len, "raw block")?
            }
            tag => return Err(DecodeError::InvalidTag { what: "block", tag }),
        };
        if payload.len() + block.len() > MAX_STREAM_DECOMPRESSED {
            return Err(DecodeError::TooLarge {
                what: "block stream",
                limit: MAX_STREAM_DECOMPRESSED,
            });
        }
        payload.extend_from_slice(block);
    }
}

/// A zstd decompression context and a fixed output buffer of [`MAX_BLOCK_DECOMPRESSED`] bytes.
struct Inflater {
    context: Decompressor<'static>,
    buffer: Vec<u8>,
}

impl Inflater {
    fn new() -> Result<Self, DecodeError> {
        Ok(Self {
            context: Decompressor::new().map_err(|e| DecodeError::Zstd(e.to_string()))?,
            buffer: vec![0; MAX_BLOCK_DECOMPRESSED],
        })
    }

    /// Decompresses one block into the fixed buffer and returns the output.
    ///
    /// A frame whose header declares more than the limit is refused before any work; a frame
    /// that does not declare its size (or lies) is stopped by the buffer's hard end, which
    /// libzstd reports as "destination buffer too small".
    fn inflate(&mut self, frame: &[u8]) -> Result<&[u8], DecodeError> {
        let too_large = DecodeError::TooLarge {
            what: "zstd block",
            limit: MAX_BLOCK_DECOMPRESSED,
        };
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(frame) {
            if size > MAX_BLOCK_DECOMPRESSED as u64 {
                return Err(too_large);
            }
        }
        let buffer = self.buffer.as_mut_slice();
        match self.context.decompress_to_buffer(frame, buffer) {
            Ok(len) => Ok(self.buffer.get(..len).unwrap_or_default()),
            Err(e) if e.to_string() == DST_TOO_SMALL => Err(too_large),
            Err(e) => Err(DecodeError::Zstd(e.to_string())),
        }
    }
}

/// The exact length of a block stream of `raw` payload bytes written with raw blocks only.
pub(super) const fn raw_stream_len(raw: usize) -> usize {
    BLOCK_HEADER_LEN * raw.div_ceil(BLOCK_THRESHOLD) + raw + 1
}

/// Writes a block stream incrementally, as chitchat's stream writer does: items are appended
/// to a pending buffer, and as soon as more than [`BLOCK_THRESHOLD`] bytes are pending, the
/// first [`BLOCK_THRESHOLD`] of them become a block. [`finish`](Self::finish) writes what is
/// left as a last (shorter or equal) block and the end tag.
pub(super) struct StreamWriter {
    compression: Compression,
    /// Finished blocks, framed.
    blocks: Vec<u8>,
    /// Raw bytes not yet in a block (at most [`BLOCK_THRESHOLD`] between calls).
    pending: Vec<u8>,
    /// Output buffer for one compressed block, as long as the chunk.
    scratch: Vec<u8>,
}

impl StreamWriter {
    pub(super) fn new(compression: Compression) -> Self {
        Self {
            compression,
            blocks: Vec::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The pending buffer, to append one item to. Call [`settle`](Self::settle) afterwards.
    pub(super) fn pending_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Cuts full blocks off the pending buffer while more than a block's worth is pending.
    pub(super) fn settle(&mut self) {
        while self.pending.len() > BLOCK_THRESHOLD {
            self.flush_block(BLOCK_THRESHOLD);
        }
    }

    /// A pessimistic bound on the finished stream's length if an item of `item_len` bytes
    /// were appended now: finished blocks as written, plus every pending byte and the new item
    /// stored raw, a 3-byte header for each block they will form, and the end tag.
    ///
    /// This is chitchat's bound (`3 + blocks + pending + item + 1`, plus 3 when the item starts
    /// a new block) whenever pending bytes and item fill at most two blocks; for larger items it
    /// counts the headers of every block they fill, so it is always a true upper bound.
    pub(super) fn len_bound_after(&self, item_len: usize) -> usize {
        self.blocks.len() + raw_stream_len(self.pending.len() + item_len)
    }

    /// A bound on the stream's length if it were finished now.
    pub(super) fn len_bound(&self) -> usize {
        self.blocks.len() + raw_stream_len(self.pending.len())
    }

    /// Writes the remaining blocks and the end tag to `out`; returns the bytes written.
    pub(super) fn finish(mut self, out: &mut Vec<u8>) -> usize {
        while !self.pending.is_empty() {
            self.flush_block(self.pending.len().min(BLOCK_THRESHOLD));
        }
        out.extend_from_slice(&self.blocks);
        out.push(TAG_END);
        self.blocks.len() + 1
    }

    /// Turns the first `n` pending bytes (1 to [`BLOCK_THRESHOLD`]) into a block.
    fn flush_block(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        let chunk = self.pending.get(..n).unwrap_or_default();
        // `n <= BLOCK_THRESHOLD`, which fits a u16.
        let raw_len = u16::try_from(n).unwrap_or(u16::MAX);
        let mut written = false;
        if self.compression == Compression::Zstd {
            // chitchat compresses into a buffer exactly as long as the chunk: the block is
            // compressed only if that fits.
            self.scratch.clear();
            self.scratch.resize(n, 0);
            let scratch = self.scratch.as_mut_slice();
            let compressed = COMPRESSOR.with(|cell| {
                let mut slot = cell.try_borrow_mut().ok()?;
                let compressor = slot
                    .get_or_insert_with(|| Compressor::new(ZSTD_LEVEL).ok())
                    .as_mut()?;
                compressor.compress_to_buffer(chunk, scratch).ok()
            });
            if let Some(len) = compressed {
                if let (Ok(len16), Some(frame)) = (u16::try_from(len), self.scratch.get(..len)) {
                    self.blocks.push(TAG_ZSTD);
                    self.blocks.extend_from_slice(&len16.to_le_bytes());
                    self.blocks.extend_from_slice(frame);
                    written = true;
                }
            }
        }
        if !written {
            self.blocks.push(TAG_RAW);
            self.blocks.extend_from_slice(&raw_len.to_le_bytes());
            self.blocks.extend_from_slice(chunk);
        }
        self.pending.drain(..n);
    }
}
