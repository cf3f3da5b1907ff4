//! Tests of the frame layer: the documented vectors (`docs/rpc-frames.md`), the header rules,
//! the decoder on any split and on any bytes.

use std::time::Duration;

use proptest::prelude::*;
use rkyv::util::AlignedVec;

use super::*;
use crate::clock::{NodeTag, Timestamp};

/// The timestamp of the vectors: 1,760,000,000,000 ms, counter 3, node tag 0x0102030405060708.
fn ts() -> Timestamp {
    Timestamp::new(1_760_000_000_000, 3, NodeTag::new(0x0102_0304_0506_0708)).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const PING: &str = "52 c0 01 05 00 00 00 00 2a 00 00 00 00 00 00 00 \
                    00 00 00 00 00 00 00 00 01 99 c8 2c c0 00 00 03 \
                    01 02 03 04 05 06 07 08 ff ff ff ff 00 00 00 00";

const REQUEST: &str = "52 c0 01 01 04 00 00 00 07 00 00 00 00 00 00 00 \
                       13 1c 67 e9 3b 36 a0 1e 01 99 c8 2c c0 00 00 03 \
                       01 02 03 04 05 06 07 08 90 d0 03 00 00 00 00 00 \
                       ef be ad de 00 00 00 00 00 00 00 00 00 00 00 00";

const ERROR: &str = "52 c0 01 03 0c 00 00 00 07 00 00 00 00 00 00 00 \
                     00 00 00 00 00 00 00 00 01 99 c8 2c c0 00 00 03 \
                     01 02 03 04 05 06 07 08 ff ff ff ff 00 00 00 00 \
                     01 00 00 00 6e 6f 20 6b 76 ff ff ff 00 00 00 00";

fn decode_one(bytes: &[u8]) -> Frame {
    let mut decoder = FrameDecoder::default();
    let mut input = bytes;
    let frame = decoder.decode(&mut input).unwrap().expect("a frame");
    assert!(input.is_empty(), "the padding is consumed too");
    frame
}

#[test]
fn the_ping_vector() {
    let mut out = AlignedVec::<16>::new();
    write_frame(&mut out, FrameHeader::new(FrameKind::Ping, 42, ts()), &()).unwrap();
    assert_eq!(out.as_slice(), unhex(PING));
    let frame = decode_one(&unhex(PING));
    assert_eq!(frame.header().kind, FrameKind::Ping);
    assert_eq!(frame.header().request_id, 42);
    assert_eq!(frame.header().timestamp, ts());
    assert_eq!(frame.header().deadline(), None);
    assert!(frame.body().is_empty());
}

#[test]
fn the_request_vector() {
    let method = MethodId::of("kv", "get");
    assert_eq!(method.0, 0x1ea0_363b_e967_1c13, "FNV-1a 64 of \"kv/get\"");
    let header = FrameHeader::request(7, method, ts(), Some(Duration::from_millis(250)));
    let mut out = AlignedVec::<16>::new();
    write_frame(&mut out, header, &0xdead_beef_u32).unwrap();
    assert_eq!(out.as_slice(), unhex(REQUEST));
    let frame = decode_one(&unhex(REQUEST));
    assert_eq!(frame.header().method, method);
    assert_eq!(frame.header().deadline(), Some(Duration::from_millis(250)));
    assert_eq!(frame.header().body_len, 4);
    let value = frame.access::<rkyv::Archived<u32>>().unwrap();
    assert_eq!(value.to_native(), 0xdead_beef);
}

#[test]
fn the_error_vector() {
    let status = Status::new(StatusCode::NotFound, "no kv");
    let mut out = AlignedVec::<16>::new();
    write_frame(
        &mut out,
        FrameHeader::new(FrameKind::Error, 7, ts()),
        &status,
    )
    .unwrap();
    assert_eq!(out.as_slice(), unhex(ERROR));
    let frame = decode_one(&unhex(ERROR));
    let archived = frame.access::<ArchivedStatus>().unwrap();
    assert_eq!(archived.code, ArchivedStatusCode::NotFound);
    assert_eq!(archived.message.as_str(), "no kv");
    let back: Status = rkyv::deserialize::<Status, rkyv::rancor::Error>(archived).unwrap();
    assert_eq!(back, status);
    assert_eq!(back.to_string(), "not found: no kv");
}

fn header_with(patch: impl FnOnce(&mut [u8; HEADER_LEN])) -> [u8; HEADER_LEN] {
    let mut bytes = FrameHeader::request(1, MethodId::of("s", "m"), ts(), None).to_bytes();
    patch(&mut bytes);
    bytes
}

#[test]
fn every_header_rule_is_checked() {
    let max = 1_024;
    let check = |bytes: [u8; HEADER_LEN]| FrameHeader::from_bytes(&bytes, max);
    assert!(check(header_with(|_| {})).is_ok());
    assert_eq!(
        check(header_with(|b| b[0] = 0x53)),
        Err(FrameError::BadMagic(0xc053))
    );
    assert_eq!(
        check(header_with(|b| b[2] = 2)),
        Err(FrameError::UnsupportedVersion(2))
    );
    assert_eq!(
        check(header_with(|b| b[3] = 9)),
        Err(FrameError::UnknownKind(9))
    );
    assert_eq!(
        check(header_with(|b| b[3] = 0)),
        Err(FrameError::UnknownKind(0))
    );
    assert_eq!(
        check(header_with(
            |b| b[4..8].copy_from_slice(&u32::MAX.to_le_bytes())
        )),
        Err(FrameError::TooLarge {
            len: 48 + u64::from(u32::MAX),
            max
        })
    );
    assert!(
        check(header_with(
            |b| b[4..8].copy_from_slice(&976u32.to_le_bytes())
        ))
        .is_ok()
    );
    assert!(matches!(
        check(header_with(
            |b| b[4..8].copy_from_slice(&977u32.to_le_bytes())
        )),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(check(header_with(|b| b[44] = 1)), Err(FrameError::Reserved));
    assert_eq!(
        check(header_with(|b| b[47] = 0x80)),
        Err(FrameError::Reserved)
    );
    assert_eq!(
        check(header_with(|b| {
            b[3] = FrameKind::Ping as u8;
            b[4] = 1;
        })),
        Err(FrameError::UnexpectedBody(FrameKind::Ping))
    );
    assert_eq!(
        check(header_with(|b| b[16..24].fill(0))),
        Err(FrameError::NoMethod)
    );
}

#[test]
fn an_oversized_frame_is_refused_before_anything_is_allocated_for_it() {
    let mut decoder = FrameDecoder::new(4_096);
    let bytes = header_with(|b| b[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes()));
    let mut input = &bytes[..];
    assert!(matches!(
        decoder.decode(&mut input),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(decoder.allocated(), 0);
    // The error sticks: the stream is out of step.
    let ping = unhex(PING);
    assert!(decoder.decode(&mut &ping[..]).is_err());
}

#[test]
fn an_invalid_archive_is_an_invalid_payload() {
    // A valid request frame whose 4-byte body is not a valid archived `String` (an out of
    // bounds pointer) and too short for a `Status`.
    let frame = decode_one(&unhex(REQUEST));
    assert!(matches!(
        frame.access::<ArchivedStatus>(),
        Err(FrameError::InvalidPayload(_))
    ));
    let mut out = AlignedVec::<16>::new();
    // A string archive, then its out-of-line pointer made to point far away.
    let long = "a string longer than eight bytes".to_owned();
    write_frame(
        &mut out,
        FrameHeader::new(FrameKind::Response, 1, ts()),
        &long,
    )
    .unwrap();
    let mut bytes = out.as_slice().to_vec();
    let len = HEADER_LEN + u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    bytes[len - 4..len].copy_from_slice(&0x7fff_0000_u32.to_le_bytes());
    let frame = decode_one(&bytes);
    assert!(matches!(
        frame.access::<rkyv::string::ArchivedString>(),
        Err(FrameError::InvalidPayload(_))
    ));
}

#[test]
fn frames_follow_each_other_and_buffers_are_recycled() {
    let mut out = AlignedVec::<16>::new();
    for i in 0..3u64 {
        let header = FrameHeader::request(i, MethodId::of("s", "m"), ts(), None);
        write_frame(
            &mut out,
            header,
            &format!("call {i} with a body of some length"),
        )
        .unwrap();
        write_frame(&mut out, FrameHeader::new(FrameKind::Cancel, i, ts()), &()).unwrap();
    }
    let mut decoder = FrameDecoder::default();
    let mut input = out.as_slice();
    let mut seen = Vec::new();
    let mut recycled_capacity = 0;
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        seen.push((frame.header().kind, frame.header().request_id));
        if frame.header().kind == FrameKind::Request {
            let text = frame.access::<rkyv::string::ArchivedString>().unwrap();
            assert!(text.as_str().starts_with("call"));
            let body = frame.into_body();
            recycled_capacity = body.capacity();
            decoder.recycle(body);
        }
    }
    assert!(input.is_empty());
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[4], (FrameKind::Request, 2));
    assert!(decoder.allocated() >= recycled_capacity);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn frames_append_without_touching_earlier_ones() {
    let mut out = AlignedVec::<16>::new();
    write_frame(&mut out, FrameHeader::new(FrameKind::Ping, 1, ts()), &()).unwrap();
    let before = out.as_slice().to_vec();
    write_frame(
        &mut out,
        FrameHeader::new(FrameKind::Response, 2, ts()),
        &7u8,
    )
    .unwrap();
    assert_eq!(&out[..before.len()], before.as_slice());
    assert_eq!(out.len() % 16, 0);
}

/// A stream of frames of every kind, with bodies of various sizes.
fn stream(frames: &[(u8, u64, Vec<u8>)]) -> AlignedVec<16> {
    let mut out = AlignedVec::<16>::new();
    for (kind, id, body) in frames {
        let kind = match kind % 6 {
            0 => FrameKind::Request,
            1 => FrameKind::Response,
            2 => FrameKind::Error,
            3 => FrameKind::Cancel,
            4 => FrameKind::Ping,
            _ => FrameKind::Pong,
        };
        let mut header = FrameHeader::new(kind, *id, ts());
        header.method = MethodId::of("svc", "msg");
        write_frame(&mut out, header, body).unwrap();
    }
    out
}

fn decode_all(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut frames = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            frames.push((*frame.header(), frame.body().to_vec()));
        }
        assert!(input.is_empty());
    }
    frames
}

proptest! {
    /// Any split of a valid stream decodes to the same frames.
    #[test]
    fn any_split_decodes_the_same_frames(
        frames in proptest::collection::vec((any::<u8>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes = stream(&frames);
        let whole = decode_all(&mut FrameDecoder::default(), &[bytes.as_slice()]);
        prop_assert_eq!(whole.len(), frames.len());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        let split = decode_all(&mut FrameDecoder::default(), &chunks);
        prop_assert_eq!(split, whole);
    }

    /// Any bytes give frames or an error, never a panic, and the decoder never holds more than
    /// its maximum.
    #[test]
    fn any_bytes_give_frames_or_an_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        start_valid in any::<bool>(),
    ) {
        let mut input_bytes = Vec::new();
        if start_valid {
            // Make the garbage reach the header checks more often.
            input_bytes.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
            input_bytes.push(FRAME_VERSION);
        }
        input_bytes.extend_from_slice(&bytes);
        let mut decoder = FrameDecoder::new(512);
        let mut input = input_bytes.as_slice();
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    prop_assert!(frame.body().len() + HEADER_LEN <= 512);
                    let _ = frame.access::<ArchivedStatus>();
                }
                Ok(None) => break,
                Err(_) => break,
            }
            prop_assert!(decoder.buffered() <= 512);
        }
        prop_assert!(decoder.buffered() <= 512);
        prop_assert!(decoder.allocated() <= 512);
    }
}
