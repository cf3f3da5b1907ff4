//! The seed inputs of the fuzz corpora (`fuzz/corpus/<target>/seed-*`): the test vectors of
//! the wire specifications (`shared/chitchat-wire.md`, `docs/cohort-envelope.md`,
//! `docs/rpc-frames.md`) and messages encoded by the crate's own encoders.
//!
//! Run by hand (it writes files), after a format change:
//!
//! ```text
//! cargo test -p cohort-fuzz-targets --test seeds -- --ignored
//! ```
//!
//! Then minimize each corpus (in `fuzz/`, see `run.sh`). The test that always runs checks
//! that every seed is accepted by the code it targets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cohort_core::rpc::{FrameHeader, FrameKind, MethodId, Status, StatusCode, write_frame};
use cohort_core::wire::{
    Compression, DeletionStatus, Delta, Digest, KeyValueUpdate, Message, NodeDelta, NodeDigest,
    ProtocolVersion, decode_chitchat, decode_datagram, encode_chitchat_with, encode_envelope,
};
use cohort_core::{NodeId, NodeTag, Timestamp};
use cohort_tokio::admin::{MemberRow, MembersReply, MembersRequest};
use rkyv::rancor::Error;
use rkyv::util::AlignedVec;

/// Hex test vectors of `shared/chitchat-wire.md` (TV-1 to TV-5 and the extra vectors).
const CHITCHAT_VECTORS: &[(&str, &str)] = &[
    (
        "tv1-syn-v0",
        "53b00000020006006e6f64652d610100000000000000047f00000129a003000000000000000000000000000000010000000000000006006e6f64652d620200000000000000047f0000012aa00300000000000000000000000000000001000000000000000c00746573742d636c7573746572",
    ),
    (
        "tv2-synack-v0",
        "53b00001020006006e6f64652d610100000000000000047f00000129a002000000000000000000000000000000000000000000000006006e6f64652d620200000000000000047f0000012aa00300000000000000000000000000000001000000000000000242000006006e6f64652d620200000000000000047f0000012aa0000000000000000000000000000000000105006b65792d62070076616c75652d6201000000000000000000",
    ),
    (
        "tv3-ack-v0-zstd",
        "53b0000201360028b52ffd20426d010024020006006e6f64652d610100047f00000129a0000105006b65792d61070076616c7500030053190a743e002f00",
    ),
    ("tv3-ack-v0-empty", "53b0000200"),
    ("tv4-badcluster-v0", "53b00003"),
    (
        "tv4-syn-other-cluster",
        "53b00000010006006e6f64652d640400000000000000047f0000012ca00200000000000000000000000000000000000000000000000d006f746865722d636c7573746572",
    ),
    (
        "tv5a-syn-v1",
        "53b00100012f0028b52ffd205e350100b006006e6f64652d610100047f00000129a0030062022a0600601180a3543984220090070348000c00746573742d636c7573746572",
    ),
    (
        "tv5b-syn-v1-raw",
        "53b00100022f0006006e6f64652d630300000000000000047f0000012ba0020000000000000000000000000000000100000000000000000c00746573742d636c7573746572",
    ),
    (
        "tv5b-synack-v1",
        "53b0010101460028b52ffd208ded0100640206006e6f64652d610100047f00000129a0040062022aa0090163032ba00200000000000000000900a01b80432033d039c05baa6c338900e4c100120001650028b52ffd20aee50200f4030006006e6f64652d620200047f0000012aa0000105006b65792d62070076616c75652d62010061012961610106613200000301010774746c010074040000020c00400cb8e326f5871b02cd002100bcc0b108390444003d0e600e00",
    ),
    (
        "tv5b-ack-v1",
        "53b001020242000006006e6f64652d630300000000000000047f0000012ba0000000000000000000000000000000000105006b65792d63070076616c75652d6301000000000000000000",
    ),
    (
        "h3-ack-v0",
        "53b0000201450028b52ffd2052e50100b4020006006e6f64652d610100047f00000129a0000106006b65792d6132000003010774746c01007404000002060040cccd8b6d92d44900c87c005e00",
    ),
    (
        "f-ack-v0-reset",
        "53b000020231000006006e6f64652d660600000000000000047f0000012ea00200000000000000000000000000000002020000000000000000",
    ),
    (
        "e-syn-v0-ipv6",
        "53b00000010006006e6f64652d65050000000000000006000000000000000000000000000000012da00200000000000000000000000000000000000000000000000c00746573742d636c7573746572",
    ),
    ("empty-syn-v0", "53b000000000010063"),
    ("empty-syn-v1", "53b0010000010063"),
    (
        "h1-synack-reencoded-v1",
        "53b0010101380028b52ffd205e7d0100040206006e6f64652d610100047f00000129a0020062022aa00301000000000000000500a01b80a3545900ea0c0009000242000006006e6f64652d620200000000000000047f0000012aa0000000000000000000000000000000000105006b65792d62070076616c75652d6201000000000000000000",
    ),
];

/// The envelope test vectors of `docs/cohort-envelope.md`.
const ENVELOPE_VECTORS: &[(&str, &str)] = &[
    (
        "e1-no-tag",
        "47c00100018bcfe5680000050123456789abcdef53b0000200",
    ),
    (
        "e2-tag",
        "47c00101018bcfe5680000060123456789abcdef04deadbeef53b00103",
    ),
];

/// The frame test vectors of `docs/rpc-frames.md`: a ping, a request to `kv/get`, and the
/// error answering it.
const FRAME_VECTORS: &[(&str, &str)] = &[
    (
        "ping",
        "52c00105000000002a0000000000000000000000000000000199c82cc00000030102030405060708ffffffff00000000",
    ),
    (
        "request-kv-get",
        "52c00101040000000700000000000000131c67e93b36a01e0199c82cc0000003010203040506070890d0030000000000efbeadde000000000000000000000000",
    ),
    (
        "error-not-found",
        "52c001030c000000070000000000000000000000000000000199c82cc00000030102030405060708ffffffff00000000010000006e6f206b76ffffff00000000",
    ),
];

/// Named inputs.
type Seeds = Vec<(String, Vec<u8>)>;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd hex: {s}");
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(text, 16).expect("hex")
        })
        .collect()
}

fn node(name: &str, generation: u64, addr: &str) -> NodeId {
    NodeId::new(
        name,
        generation,
        addr.parse::<SocketAddr>().expect("an address"),
    )
}

fn kv(key: &str, value: &str, version: u64, status: DeletionStatus) -> KeyValueUpdate {
    KeyValueUpdate {
        key: key.to_owned(),
        value: value.to_owned(),
        version,
        status,
    }
}

/// Messages built here, to be encoded in both versions and both compressions.
fn messages() -> Vec<(&'static str, Message)> {
    let a = node("node-a", 1, "127.0.0.1:41001");
    let b = node("node-b", 2, "127.0.0.1:41002");
    let e = node("node-e", 5, "[::1]:41005");
    let d = |heartbeat, last_gc_version, max_version| NodeDigest {
        heartbeat,
        last_gc_version,
        max_version,
    };
    let digest = Digest {
        entries: vec![
            (a.clone(), d(3, 0, 4)),
            (b.clone(), d(9, 1, 2)),
            (e.clone(), d(1, 0, 0)),
        ],
    };
    // Many nodes with long values: a block stream of several blocks, compressible.
    let big = Delta {
        nodes: (0..40)
            .map(|i| NodeDelta {
                node: node(&format!("node-{i:03}"), i, "10.0.0.1:7000"),
                last_gc_version: 0,
                from_version_excluded: 0,
                max_version: 3,
                key_values: (1..=3)
                    .map(|v| {
                        kv(
                            &format!("key-{v}"),
                            &"x".repeat(200),
                            v,
                            DeletionStatus::Set,
                        )
                    })
                    .collect(),
            })
            .collect(),
    };
    let delta = Delta {
        nodes: vec![
            NodeDelta {
                node: a,
                last_gc_version: 0,
                from_version_excluded: 1,
                max_version: 4,
                key_values: vec![
                    kv("key-a2", "", 3, DeletionStatus::Deleted),
                    kv("key-ttl", "t", 4, DeletionStatus::DeleteAfterTtl),
                ],
            },
            NodeDelta {
                node: b,
                last_gc_version: 2,
                from_version_excluded: 0,
                max_version: 2,
                key_values: Vec::new(),
            },
            NodeDelta {
                node: e,
                last_gc_version: 0,
                from_version_excluded: 0,
                max_version: 1,
                key_values: vec![kv("rpc_addr", "[::1]:42005", 1, DeletionStatus::Set)],
            },
        ],
    };
    vec![
        (
            "syn",
            Message::Syn {
                digest: digest.clone(),
                cluster_id: "test-cluster".to_owned(),
            },
        ),
        (
            "synack",
            Message::SynAck {
                digest,
                delta: delta.clone(),
            },
        ),
        ("ack", Message::Ack { delta }),
        ("ack-big", Message::Ack { delta: big }),
        ("badcluster", Message::BadCluster),
    ]
}

/// Every chitchat datagram seed: the vectors, then the built messages encoded.
fn chitchat_seeds() -> Seeds {
    let mut seeds: Seeds = CHITCHAT_VECTORS
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), hex(bytes)))
        .collect();
    for (name, message) in messages() {
        for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
            for compression in [Compression::Zstd, Compression::None] {
                let mut out = Vec::new();
                encode_chitchat_with(version, &message, compression, &mut out);
                seeds.push((format!("{name}-{version:?}-{compression:?}"), out));
            }
        }
    }
    seeds
}

fn timestamp() -> Timestamp {
    Timestamp::new(1_760_000_000_000, 3, NodeTag::new(0x0102_0304_0506_0708)).expect("in range")
}

/// Envelope seeds: the vectors, and chitchat seeds enveloped with and without a tag.
fn envelope_seeds() -> Seeds {
    let mut seeds: Seeds = ENVELOPE_VECTORS
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), hex(bytes)))
        .collect();
    for (name, chitchat) in chitchat_seeds().into_iter().filter(|(_, c)| c.len() < 1024) {
        for (tagged, tag) in [("", None), ("-tag", Some(&b"0123456789abcdef"[..]))] {
            let mut out = Vec::new();
            encode_envelope(timestamp(), tag, &mut out).expect("a valid tag");
            out.extend_from_slice(&chitchat);
            seeds.push((format!("enveloped{tagged}-{name}"), out));
        }
    }
    seeds
}

/// Frames written by the crate: every kind, with the built-in messages as bodies.
fn frames() -> Vec<(&'static str, AlignedVec<16>)> {
    let t = timestamp();
    let method = MethodId::of("kv", "get");
    let mut frames = Vec::new();
    let mut push = |name, write: &dyn Fn(&mut AlignedVec<16>)| {
        let mut out = AlignedVec::new();
        write(&mut out);
        frames.push((name, out));
    };
    push("request-string", &|out| {
        let header = FrameHeader::request(100, method, t, Some(Duration::from_millis(250)));
        write_frame(out, header, &"user:42".to_owned()).expect("writes");
    });
    push("request-no-deadline", &|out| {
        let header = FrameHeader::request(102, method, t, None);
        write_frame(out, header, &vec![1_u8, 2, 3]).expect("writes");
    });
    push("request-admin", &|out| {
        let header = FrameHeader::request(104, MethodId::of("cohort.admin", "members"), t, None);
        write_frame(out, header, &MembersRequest).expect("writes");
    });
    push("response-u32", &|out| {
        let header = FrameHeader::new(FrameKind::Response, 2, t);
        write_frame(out, header, &0xdead_beef_u32).expect("writes");
    });
    push("response-members", &|out| {
        let header = FrameHeader::new(FrameKind::Response, 4, t);
        write_frame(out, header, &members_reply()).expect("writes");
    });
    push("error-status", &|out| {
        let header = FrameHeader::new(FrameKind::Error, 7, t);
        let status = Status::new(StatusCode::Unavailable, "too many calls in flight, retry");
        write_frame(out, header, &status).expect("writes");
    });
    push("cancel", &|out| {
        write_frame(out, FrameHeader::new(FrameKind::Cancel, 100, t), &()).expect("writes");
    });
    push("ping", &|out| {
        write_frame(out, FrameHeader::new(FrameKind::Ping, 9, t), &()).expect("writes");
    });
    push("pong", &|out| {
        write_frame(out, FrameHeader::new(FrameKind::Pong, 8, t), &()).expect("writes");
    });
    frames
}

fn members_reply() -> MembersReply {
    let row = |name: &str, local| MemberRow {
        id: format!("{name}/1@127.0.0.1:41001"),
        name: name.to_owned(),
        generation: 1,
        gossip_addr: "127.0.0.1:41001".to_owned(),
        rpc_addr: "127.0.0.1:42001".to_owned(),
        data_center: "eu-west-1a".to_owned(),
        status: "live".to_owned(),
        keys: 3,
        local,
    };
    MembersReply {
        version: 12,
        members: vec![row("node-a", true), row("node-b-with-a-longer-name", false)],
    }
}

/// Frame streams: the vectors, each crate-written frame, and all of them back to back.
fn frame_streams() -> Seeds {
    let mut streams: Seeds = FRAME_VECTORS
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), hex(bytes)))
        .collect();
    let vectors: Vec<u8> = streams.iter().flat_map(|(_, s)| s.clone()).collect();
    streams.push(("vectors".to_owned(), vectors));
    let frames = frames();
    let all: Vec<u8> = frames.iter().flat_map(|(_, f)| f.to_vec()).collect();
    streams.extend(frames.into_iter().map(|(n, f)| (n.to_owned(), f.to_vec())));
    streams.push(("all".to_owned(), all));
    streams
}

/// Archives of every built-in message type.
fn archives() -> Vec<(&'static str, Vec<u8>)> {
    let bytes = |r: Result<AlignedVec, Error>| r.expect("serializes").to_vec();
    vec![
        (
            "status",
            bytes(rkyv::to_bytes(&Status::new(StatusCode::NotFound, "no kv"))),
        ),
        (
            "status-long",
            bytes(rkyv::to_bytes(&Status::new(
                StatusCode::InvalidPayload,
                "the request's archive did not validate",
            ))),
        ),
        ("members-request", bytes(rkyv::to_bytes(&MembersRequest))),
        ("members-reply", bytes(rkyv::to_bytes(&members_reply()))),
        ("timestamp", bytes(rkyv::to_bytes(&timestamp()))),
        ("string", bytes(rkyv::to_bytes(&"user:42".to_owned()))),
        ("string-long", bytes(rkyv::to_bytes(&"k".repeat(100)))),
        ("bytes", bytes(rkyv::to_bytes(&vec![7_u8; 40]))),
        ("u32", bytes(rkyv::to_bytes(&0xdead_beef_u32))),
    ]
}

/// Every seed, by target.
fn seeds() -> Vec<(&'static str, Seeds)> {
    let chitchat = chitchat_seeds();
    let enveloped = envelope_seeds();
    let frames = frame_streams();
    // rpc_frames: a split position (u16 LE) and a maximum frame size selector come first.
    let prefixed = frames
        .iter()
        .flat_map(|(name, stream)| {
            [
                ([10, 0, 0x10], "split10-max1072"),
                ([50, 0, 0xff], "split50-max16m"),
            ]
            .into_iter()
            .map(move |(prefix, how)| {
                let mut input = prefix.to_vec();
                input.extend_from_slice(stream);
                (format!("{how}-{name}"), input)
            })
        })
        .collect();
    let archives = archives()
        .into_iter()
        .map(|(n, a)| (n.to_owned(), a))
        .collect();
    let mut node = chitchat.clone();
    node.extend(enveloped.iter().cloned());
    // node_keyed: an even first byte seals the rest with the node's key, an odd one sends it
    // as it is.
    let keyed = chitchat
        .iter()
        .map(|(name, bytes)| (format!("sealed-{name}"), [&[0][..], bytes].concat()))
        .chain(
            enveloped
                .iter()
                .map(|(name, bytes)| (format!("raw-{name}"), [&[1][..], bytes].concat())),
        )
        .collect();
    vec![
        ("gossip_codec", chitchat.clone()),
        ("envelope", enveloped),
        ("rpc_frames", prefixed),
        ("rpc_connection", frames),
        ("node_datagram", node),
        ("node_enveloped", chitchat),
        ("node_keyed", keyed),
        ("rkyv_access", archives),
        ("cohort_mode_packet", cohort_mode_seeds()),
    ]
}

/// One cohort-mode packet of each kind, from node-a of cluster `test-cluster` to node-b (the
/// fuzz target's machine), with updates about node-b itself and about others.
fn cohort_mode_seeds() -> Vec<(String, Vec<u8>)> {
    use cohort_core::membership::cohort_mode::wire::{
        self as cm, Body, Packet, SYNC_BUCKETS, Update, UpdateKind,
    };
    let node_a = NodeId::new("node-a", 1, "127.0.0.1:41001".parse().unwrap());
    let node_b = NodeId::new("node-b", 2, "127.0.0.1:41002".parse().unwrap());
    let node_c = NodeId::new("node-c", 3, "[::1]:41003".parse().unwrap());
    let updates = vec![
        Update {
            kind: UpdateKind::Suspect,
            id: node_b.clone(),
            incarnation: 0,
        },
        Update {
            kind: UpdateKind::Alive,
            id: node_c.clone(),
            incarnation: 4,
        },
        Update {
            kind: UpdateKind::Dead,
            id: NodeId::new("node-d", 1, "127.0.0.1:41004".parse().unwrap()),
            incarnation: 1,
        },
        Update {
            kind: UpdateKind::Left,
            id: NodeId::new("node-e", 1, "127.0.0.1:41005".parse().unwrap()),
            incarnation: 0,
        },
    ];
    let bodies = [
        (
            "ping",
            Body::Ping {
                seq: 1,
                target_generation: 2,
            },
        ),
        ("ack", Body::Ack { seq: 1 }),
        (
            "ping-req",
            Body::PingReq {
                seq: 2,
                target: node_c,
            },
        ),
        ("nack", Body::Nack { seq: 2 }),
        ("gossip", Body::Gossip),
        (
            "sync-request",
            Body::SyncRequest {
                buckets: vec![7; SYNC_BUCKETS],
                answer_back: true,
            },
        ),
        ("sync-response", Body::SyncResponse),
        ("keys-request", Body::KeysRequest),
    ];
    let deltas = vec![NodeDelta {
        node: node_b.clone(),
        last_gc_version: 1,
        from_version_excluded: 1,
        max_version: 4,
        key_values: vec![
            KeyValueUpdate {
                key: "shard".into(),
                value: "7".into(),
                version: 2,
                status: DeletionStatus::Set,
            },
            KeyValueUpdate {
                key: "old".into(),
                value: String::new(),
                version: 4,
                status: DeletionStatus::Deleted,
            },
        ],
    }];
    bodies
        .into_iter()
        .map(|(name, body)| {
            let packet = Packet {
                cluster: cm::cluster_hash("test-cluster"),
                from: node_a.clone(),
                incarnation: 1,
                keys_version: 4,
                body,
                updates: updates.clone(),
                deltas: deltas.clone(),
            };
            let mut bytes = Vec::new();
            cm::encode(&packet, &mut bytes);
            (name.to_owned(), bytes)
        })
        .collect()
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The seeds are valid inputs: the chitchat ones decode, the frame streams decode whole, and
/// every target takes its seeds.
#[test]
fn seeds_are_valid() {
    for (name, bytes) in chitchat_seeds() {
        if let Err(error) = decode_chitchat(&bytes) {
            panic!("seed {name} does not decode: {error}");
        }
    }
    for (name, bytes) in envelope_seeds() {
        let datagram = decode_datagram(&bytes);
        assert!(datagram.is_ok(), "seed {name}: {datagram:?}");
        assert!(datagram.is_ok_and(|d| d.envelope.is_some()), "seed {name}");
    }
    for (target, seeds) in seeds() {
        let run = cohort_fuzz_targets::TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .map(|(_, run)| run)
            .expect("a target");
        for (_, bytes) in seeds {
            run(&bytes);
        }
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore = "writes the seed files into fuzz/corpus; run by hand"]
fn write_seeds() {
    for (target, seeds) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("creates the corpus folder");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("writes a seed");
        }
    }
}
