//! RPC frames: the 48-byte header, the encoder, and the streaming decoder.
//!
//! Owns the byte layout of `docs/rpc-frames.md` and the rules a received frame must follow.
//! The decoder takes any split of a byte stream, never buffers more than the configured maximum
//! frame size, and lands each body in a 16-byte aligned buffer so that its rkyv archive is
//! validated and read in place. It does no I/O.

use std::time::Duration;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use crate::clock::Timestamp;
use crate::hash::Fnv1a64;

/// The first two bytes of every frame, as a `u16` little endian (bytes `52 c0`).
pub const FRAME_MAGIC: u16 = 0xC052;

/// The frame format version this code writes and reads.
pub const FRAME_VERSION: u8 = 1;

/// The length of the fixed header; the body (an rkyv archive) follows at this offset, which is
/// a multiple of 16.
pub const HEADER_LEN: usize = 48;

/// The largest frame (header and body) a decoder accepts unless configured otherwise: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// The deadline field's value for a call without a deadline.
pub const NO_DEADLINE: u32 = u32::MAX;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A call: `method` names the handler, the body is the request's archive.
    Request = 1,
    /// A call's reply: the body is the reply's archive.
    Response = 2,
    /// A call's failure: the body is an archived [`Status`](super::Status).
    Error = 3,
    /// The caller gave up on `request_id`: the callee may stop working on it. No body.
    Cancel = 4,
    /// A keep-alive probe, answered by a `Pong` with the same `request_id`. No body.
    Ping = 5,
    /// The answer to a `Ping`. No body.
    Pong = 6,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Error,
            4 => Self::Cancel,
            5 => Self::Ping,
            6 => Self::Pong,
            _ => return None,
        })
    }

    /// Whether frames of this kind carry a body.
    #[must_use]
    pub const fn has_body(self) -> bool {
        matches!(self, Self::Request | Self::Response | Self::Error)
    }
}

/// A method's id on the wire: FNV-1a 64 of `"service/message"`, a fixed function of the names
/// a service declares (never of Rust type names, which differ between builds). 0 is "no
/// method" (frames other than requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodId(pub u64);

impl MethodId {
    /// The id of `message` in `service`: FNV-1a 64 of `service`, `/`, `message`.
    ///
    /// ```
    /// use cohort_core::hash::fnv1a64;
    /// use cohort_core::rpc::MethodId;
    ///
    /// assert_eq!(MethodId::of("kv", "get"), MethodId(fnv1a64(b"kv/get")));
    /// ```
    #[must_use]
    pub const fn of(service: &str, message: &str) -> Self {
        Self(
            Fnv1a64::new()
                .write(service.as_bytes())
                .write(b"/")
                .write(message.as_bytes())
                .finish(),
        )
    }
}

/// Why bytes are not a valid frame. A decoder that returned one is out of step with the
/// stream for good: close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first two bytes are not `52 c0`.
    #[error("not an RPC frame (magic {0:#06x})")]
    BadMagic(u16),
    /// A version this code does not read.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header announces a frame larger than the decoder's maximum.
    #[error("a frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Header and body, as announced.
        len: u64,
        /// The decoder's maximum.
        max: usize,
    },
    /// Flags or reserved bits are set (none are defined in version 1).
    #[error("reserved header bits are set")]
    Reserved,
    /// A frame of a kind without a body announces one.
    #[error("a {0:?} frame carries no body")]
    UnexpectedBody(FrameKind),
    /// A request without a method id.
    #[error("a request without a method")]
    NoMethod,
    /// The body is not a valid archive of the expected type.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// A value could not be serialized.
    #[error("cannot serialize: {0}")]
    Serialize(String),
}

/// A frame's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame is.
    pub kind: FrameKind,
    /// The call it belongs to (chosen by the caller, unique among its calls in flight on the
    /// connection), or a ping's nonce.
    pub request_id: u64,
    /// The method called (requests), or 0.
    pub method: MethodId,
    /// The sender's hybrid logical clock when it sent the frame.
    pub timestamp: Timestamp,
    /// How long the call may still take, as the sender saw it (requests), in microseconds;
    /// [`NO_DEADLINE`] for none. Durations travel, never instants.
    pub deadline_micros: u32,
    /// The body's length in bytes (set by the encoder).
    pub body_len: u32,
}

impl FrameHeader {
    /// A request header (the body's length is set when the frame is written).
    #[must_use]
    pub fn request(
        request_id: u64,
        method: MethodId,
        timestamp: Timestamp,
        deadline: Option<Duration>,
    ) -> Self {
        Self {
            kind: FrameKind::Request,
            request_id,
            method,
            timestamp,
            deadline_micros: deadline.map_or(NO_DEADLINE, |d| {
                u32::try_from(d.as_micros()).unwrap_or(NO_DEADLINE - 1)
            }),
            body_len: 0,
        }
    }

    /// A header of `kind` for `request_id`, with no method and no deadline.
    #[must_use]
    pub fn new(kind: FrameKind, request_id: u64, timestamp: Timestamp) -> Self {
        Self {
            kind,
            request_id,
            method: MethodId(0),
            timestamp,
            deadline_micros: NO_DEADLINE,
            body_len: 0,
        }
    }

    /// The deadline as a duration, if the call has one.
    #[must_use]
    pub fn deadline(&self) -> Option<Duration> {
        (self.deadline_micros != NO_DEADLINE)
            .then(|| Duration::from_micros(u64::from(self.deadline_micros)))
    }

    /// The header's 48 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        out[2] = FRAME_VERSION;
        out[3] = self.kind as u8;
        out[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.method.0.to_le_bytes());
        out[24..40].copy_from_slice(&self.timestamp.to_bytes());
        out[40..44].copy_from_slice(&self.deadline_micros.to_le_bytes());
        // 44..48: flags and reserved, zero.
        out
    }

    /// Reads a header, checking it against the rules of version 1 and a maximum frame size.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`FrameError`].
    pub fn from_bytes(bytes: &[u8; HEADER_LEN], max_frame: usize) -> Result<Self, FrameError> {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u16_at(0);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if bytes[2] != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(bytes[2]));
        }
        let kind = FrameKind::from_byte(bytes[3]).ok_or(FrameError::UnknownKind(bytes[3]))?;
        let body_len = u32_at(4);
        let len = HEADER_LEN as u64 + u64::from(body_len);
        if len > max_frame as u64 {
            return Err(FrameError::TooLarge {
                len,
                max: max_frame,
            });
        }
        if u32_at(44) != 0 {
            return Err(FrameError::Reserved);
        }
        if body_len != 0 && !kind.has_body() {
            return Err(FrameError::UnexpectedBody(kind));
        }
        let method = MethodId(u64_at(16));
        if kind == FrameKind::Request && method.0 == 0 {
            return Err(FrameError::NoMethod);
        }
        let mut ts = [0u8; 16];
        ts.copy_from_slice(&bytes[24..40]);
        Ok(Self {
            kind,
            request_id: u64_at(8),
            method,
            timestamp: Timestamp::from_bytes(ts),
            deadline_micros: u32_at(40),
            body_len,
        })
    }
}

/// Appends a frame to `out`: `header` (its `body_len` set here), then `value` serialized
/// straight behind it as an rkyv archive (no intermediate buffer), then zero padding to the
/// next multiple of 16 bytes, so that every frame in `out` starts 16-byte aligned. For kinds
/// without a body (cancel, ping, pong), pass `&()`. `out` should hold whole frames only (a
/// fresh buffer, or frames written by this function).
///
/// # Errors
///
/// [`FrameError::Serialize`] when the value cannot be serialized or its archive is over
/// `u32::MAX` bytes; `out` is then as it was.
pub fn write_frame<T>(
    out: &mut AlignedVec<16>,
    mut header: FrameHeader,
    value: &T,
) -> Result<(), FrameError>
where
    T: for<'a, 'b> rkyv::Serialize<
            HighSerializer<&'b mut AlignedVec<16>, ArenaHandle<'a>, rancor::Error>,
        >,
{
    let start = out.len();
    debug_assert!(
        start % 16 == 0,
        "frames start at 16-byte boundaries in `out`"
    );
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    let body_start = out.len();
    if header.kind.has_body() {
        if let Err(error) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, &mut *out) {
            out.resize(start, 0);
            return Err(FrameError::Serialize(error.to_string()));
        }
    }
    let Ok(body_len) = u32::try_from(out.len() - body_start) else {
        out.resize(start, 0);
        return Err(FrameError::Serialize("the archive exceeds 4 GiB".into()));
    };
    header.body_len = body_len;
    out[start..body_start].copy_from_slice(&header.to_bytes());
    let padded = out.len().next_multiple_of(16);
    out.resize(padded, 0);
    Ok(())
}

/// A received frame: its header and its body in a 16-byte aligned buffer.
#[derive(Debug)]
pub struct Frame {
    header: FrameHeader,
    body: AlignedVec<16>,
}

impl Frame {
    /// The header.
    #[must_use]
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The body's bytes (an rkyv archive, or nothing).
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body validated as an archived `T` (`rkyv::access`, with bytecheck): read in place,
    /// never copied. Never skip this for bytes from the network.
    ///
    /// # Errors
    ///
    /// [`FrameError::InvalidPayload`] when the body is not a valid archive of `T`.
    pub fn access<T>(&self) -> Result<&T, FrameError>
    where
        T: rkyv::Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        rkyv::access::<T, rancor::Error>(&self.body)
            .map_err(|e| FrameError::InvalidPayload(e.to_string()))
    }

    /// The body's buffer, to give back to a decoder ([`FrameDecoder::recycle`]) once done.
    #[must_use]
    pub fn into_body(self) -> AlignedVec<16> {
        self.body
    }
}

/// Where the decoder is in the stream.
#[derive(Debug)]
enum Reading {
    /// `have` bytes of a header are in `header`.
    Header { have: usize },
    /// A header was read; `body` fills up to its length.
    Body { header: FrameHeader },
}

/// A streaming frame decoder: feed it bytes as they arrive, in any split, and take whole
/// frames.
///
/// It buffers at most one header and one body, never more than the maximum frame size (a
/// header announcing more is refused before anything is allocated for it), and skips the
/// padding between frames. Once it returns an error it returns that error for good: the
/// stream is out of step and the connection should be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    header: [u8; HEADER_LEN],
    reading: Reading,
    body: AlignedVec<16>,
    /// Padding bytes still to skip after the last frame (to the next multiple of 16).
    skip: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that accepts frames of at most `max_frame_size` bytes (header included; at
    /// least [`HEADER_LEN`]).
    #[must_use]
    pub fn new(max_frame_size: usize) -> Self {
        Self {
            max_frame: max_frame_size.max(HEADER_LEN),
            header: [0; HEADER_LEN],
            reading: Reading::Header { have: 0 },
            body: AlignedVec::new(),
            skip: 0,
            failed: None,
        }
    }

    /// Gives a body buffer back (from [`Frame::into_body`]) so that the next frame lands in it
    /// without an allocation. Buffers larger than needed are kept; one is kept at most.
    pub fn recycle(&mut self, mut body: AlignedVec<16>) {
        if matches!(self.reading, Reading::Header { .. }) && body.capacity() > self.body.capacity()
        {
            body.clear();
            self.body = body;
        }
    }

    /// Bytes allocated for frame bodies now (never more than the maximum frame size, plus the
    /// capacity of a buffer given back with [`recycle`](Self::recycle)).
    #[must_use]
    pub fn allocated(&self) -> usize {
        self.body.capacity()
    }

    /// Bytes of an incomplete frame held now.
    #[must_use]
    pub fn buffered(&self) -> usize {
        match self.reading {
            Reading::Header { have } => have,
            Reading::Body { .. } => HEADER_LEN + self.body.len(),
        }
    }

    /// Takes bytes from the front of `input` (advancing it) until a whole frame is read, and
    /// returns it; `None` when `input` ran out first (the bytes taken are kept for the next
    /// call).
    ///
    /// # Errors
    ///
    /// The first [`FrameError`] in the stream; the same error for every later call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        loop {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                *input = &input[n..];
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            match self.reading {
                Reading::Header { have } => {
                    let n = (HEADER_LEN - have).min(input.len());
                    self.header[have..have + n].copy_from_slice(&input[..n]);
                    *input = &input[n..];
                    if have + n < HEADER_LEN {
                        self.reading = Reading::Header { have: have + n };
                        return Ok(None);
                    }
                    let header = match FrameHeader::from_bytes(&self.header, self.max_frame) {
                        Ok(header) => header,
                        Err(error) => {
                            self.failed = Some(error.clone());
                            return Err(error);
                        }
                    };
                    self.body.clear();
                    // Grow with what arrives (a header alone claims nothing up front), from a
                    // first 64 KiB.
                    self.body.reserve((header.body_len as usize).min(64 * 1024));
                    self.reading = Reading::Body { header };
                }
                Reading::Body { header } => {
                    let want = header.body_len as usize - self.body.len();
                    let n = want.min(input.len());
                    self.body.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    if n < want {
                        return Ok(None);
                    }
                    self.reading = Reading::Header { have: 0 };
                    let frame_len = HEADER_LEN + header.body_len as usize;
                    self.skip = frame_len.next_multiple_of(16) - frame_len;
                    // An empty body needs no buffer: the decoder keeps its own for the next one.
                    let body = if header.body_len == 0 {
                        AlignedVec::new()
                    } else {
                        std::mem::take(&mut self.body)
                    };
                    // Let the padding after this frame go now if it is already here.
                    let n = self.skip.min(input.len());
                    *input = &input[n..];
                    self.skip -= n;
                    return Ok(Some(Frame { header, body }));
                }
            }
        }
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}
