//! What `cohort agent` prints: every line goes through [`Output::emit`], as text or as one JSON
//! object, and every membership event becomes a line in [`Line::from_event`] alone.

use std::io::Write;
use std::net::SocketAddr;

// The event type of both drivers (core's, re-exported by each). The only name of it in this
// crate: a rename is a change here.
use cohort_tokio::Event;
use cohort_tokio::{Limit, Member, Members, NodeId, Protocol, Timestamp};
use serde_json::{Map, Value, json};

/// One line of output, before it is formatted.
#[derive(Debug)]
pub(crate) enum Line<'a> {
    /// The node is bound and running.
    Ready {
        /// Its identity.
        id: &'a NodeId,
        /// The address its socket is bound to.
        listen: SocketAddr,
        /// The RPC address it publishes, if it serves RPC.
        rpc: Option<SocketAddr>,
    },
    /// A member changed status: `what` is `joined`, `recovered`, `unready`, `failed` or `left`.
    Member {
        /// The event's name.
        what: &'static str,
        /// The member after the change.
        member: &'a Member,
    },
    /// A member's state was garbage collected.
    Removed(&'a NodeId),
    /// A key of a member changed (`value` is `None` when it was deleted).
    Key {
        /// The member after the change.
        member: &'a Member,
        /// The key.
        key: &'a str,
        /// The value before.
        old: Option<&'a str>,
        /// The new value.
        value: Option<&'a str>,
    },
    /// This reader fell behind and lost `missed` events.
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
    /// A peer's clock is too far ahead.
    Skew {
        /// The peer's address.
        from: SocketAddr,
        /// The timestamp it sent.
        remote: &'a Timestamp,
        /// How many more from it were held back since its last report.
        suppressed: u64,
    },
    /// The local node suspects itself.
    Suspect,
    /// A node of another cluster contacted us.
    BadCluster {
        /// Its address.
        from: SocketAddr,
        /// How many more from it were held back since its last report.
        suppressed: u64,
    },
    /// A datagram without a valid authentication tag was dropped.
    Unauthenticated {
        /// Its sender (as it claims).
        from: SocketAddr,
        /// How many more from it were held back since its last report.
        suppressed: u64,
    },
    /// What a peer sent broke a bound of the node's state limits and was not stored.
    OverLimit {
        /// The sender.
        from: SocketAddr,
        /// The bound.
        limit: Limit,
        /// How many more from it were held back since its last report.
        suppressed: u64,
    },
    /// A datagram of the other membership protocol.
    ProtocolMismatch {
        /// The sender.
        from: SocketAddr,
        /// The protocol it speaks.
        theirs: Protocol,
        /// How many more from it were held back since its last report.
        suppressed: u64,
    },
    /// An event this command does not know (a newer driver's), in its debug form.
    Unknown(String),
    /// The membership after an event.
    Members {
        /// Live members (this node included).
        live: usize,
        /// Every known member.
        known: usize,
    },
    /// The node has left the cluster and stopped.
    Stopped,
}

/// ` suppressed=<n>` when a diagnostic event stands for more than itself, nothing otherwise.
fn held_back(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" suppressed={suppressed}")
    }
}

impl<'a> Line<'a> {
    /// The line for one membership event: the one place events are mapped to output.
    pub(crate) fn from_event(event: &'a Event) -> Self {
        match event {
            Event::Joined(member)
            | Event::Recovered(member)
            | Event::Unready(member)
            | Event::Failed(member)
            | Event::Left(member)
            | Event::Reset(member) => Self::Member {
                what: event.kind(),
                member,
            },
            Event::Removed(id) => Self::Removed(id),
            Event::KeyChanged {
                member,
                key,
                old,
                value,
            } => Self::Key {
                member,
                key,
                old: old.as_deref(),
                value: value.as_deref(),
            },
            Event::Lagged { missed, .. } => Self::Lagged { missed: *missed },
            Event::ClockSkew {
                from,
                remote,
                suppressed,
                ..
            } => Self::Skew {
                from: *from,
                remote,
                suppressed: *suppressed,
            },
            Event::SelfSuspected => Self::Suspect,
            Event::BadCluster { from, suppressed } => Self::BadCluster {
                from: *from,
                suppressed: *suppressed,
            },
            Event::Unauthenticated { from, suppressed } => Self::Unauthenticated {
                from: *from,
                suppressed: *suppressed,
            },
            Event::OverLimit {
                from,
                limit,
                suppressed,
            } => Self::OverLimit {
                from: *from,
                limit: *limit,
                suppressed: *suppressed,
            },
            Event::ProtocolMismatch {
                from,
                theirs,
                suppressed,
            } => Self::ProtocolMismatch {
                from: *from,
                theirs: *theirs,
                suppressed: *suppressed,
            },
            other => Self::Unknown(format!("{other:?}")),
        }
    }

    /// The summary line of a membership snapshot.
    pub(crate) fn members(members: &Members) -> Self {
        Self::Members {
            live: members.live_count(),
            known: members.all().len(),
        }
    }

    /// The line as text. Ids print as `name/generation@address`.
    fn text(&self) -> String {
        match self {
            Self::Ready { id, listen, rpc } => match rpc {
                Some(rpc) => format!("ready id={id} listen={listen} rpc={rpc}"),
                None => format!("ready id={id} listen={listen} rpc=none"),
            },
            Self::Member { what, member } => format!("{what} {}", member.id),
            Self::Removed(id) => format!("removed {id}"),
            Self::Key {
                member,
                key,
                value: Some(value),
                ..
            } => format!("key {} {key}={value}", member.id),
            Self::Key {
                member,
                key,
                value: None,
                ..
            } => format!("key {} {key}", member.id),
            Self::Lagged { missed } => format!("lagged missed={missed}"),
            Self::Skew {
                from, suppressed, ..
            } => format!("skew {from}{}", held_back(*suppressed)),
            Self::Suspect => "suspect".to_owned(),
            Self::BadCluster { from, suppressed } => {
                format!("bad-cluster {from}{}", held_back(*suppressed))
            }
            Self::Unauthenticated { from, suppressed } => {
                format!("unauthenticated {from}{}", held_back(*suppressed))
            }
            Self::OverLimit {
                from,
                limit,
                suppressed,
            } => format!("over-limit {from} {limit}{}", held_back(*suppressed)),
            Self::ProtocolMismatch {
                from,
                theirs,
                suppressed,
            } => format!(
                "protocol-mismatch {from} theirs={theirs}{}",
                held_back(*suppressed)
            ),
            Self::Unknown(debug) => format!("event {debug}"),
            Self::Members { live, known } => format!("members live={live} known={known}"),
            Self::Stopped => "stopped".to_owned(),
        }
    }

    /// The line as one JSON object, its kind under `"event"`.
    fn json(&self) -> Value {
        match self {
            Self::Ready { id, listen, rpc } => json!({
                "event": "ready",
                "id": id.to_string(),
                "listen": listen.to_string(),
                "rpc": rpc.map(|rpc| rpc.to_string()),
            }),
            Self::Member { what, member } => json!({"event": what, "member": member_json(member)}),
            Self::Removed(id) => json!({"event": "removed", "member": Value::Object(id_json(id))}),
            Self::Key {
                member,
                key,
                old,
                value,
            } => json!({
                "event": "key",
                "member": member_json(member),
                "key": key,
                "old": old,
                "value": value,
            }),
            Self::Lagged { missed } => json!({"event": "lagged", "missed": missed}),
            Self::Skew {
                from,
                remote,
                suppressed,
            } => json!({
                "event": "skew",
                "from": from.to_string(),
                "remote": remote.to_string(),
                "suppressed": suppressed,
            }),
            Self::Suspect => json!({"event": "suspect"}),
            Self::BadCluster { from, suppressed } => json!({
                "event": "bad-cluster",
                "from": from.to_string(),
                "suppressed": suppressed,
            }),
            Self::Unauthenticated { from, suppressed } => json!({
                "event": "unauthenticated",
                "from": from.to_string(),
                "suppressed": suppressed,
            }),
            Self::OverLimit {
                from,
                limit,
                suppressed,
            } => json!({
                "event": "over-limit",
                "from": from.to_string(),
                "limit": limit.name(),
                "suppressed": suppressed,
            }),
            Self::ProtocolMismatch {
                from,
                theirs,
                suppressed,
            } => json!({
                "event": "protocol-mismatch",
                "from": from.to_string(),
                "theirs": theirs.name(),
                "suppressed": suppressed,
            }),
            Self::Unknown(debug) => json!({"event": "unknown", "debug": debug}),
            Self::Members { live, known } => {
                json!({"event": "members", "live": live, "known": known})
            }
            Self::Stopped => json!({"event": "stopped"}),
        }
    }
}

/// The fields of an identity: `id` (`name/generation@address`), `name`, `generation`, `addr`.
fn id_json(id: &NodeId) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("id".to_owned(), json!(id.to_string()));
    fields.insert("name".to_owned(), json!(id.name()));
    fields.insert("generation".to_owned(), json!(id.generation()));
    fields.insert("addr".to_owned(), json!(id.gossip_addr().to_string()));
    fields
}

/// A member: its identity's fields, `status` and `keys`.
fn member_json(member: &Member) -> Value {
    let mut fields = id_json(&member.id);
    fields.insert("status".to_owned(), json!(member.status.as_str()));
    fields.insert("keys".to_owned(), json!(member.keys));
    Value::Object(fields)
}

/// Where lines go: standard output, as text or JSON.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    /// One JSON object per line instead of text.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `line` and flushes, so that a reader sees it at once. A closed standard output
    /// (the reader went away) is ignored: the node carries on until told to stop.
    pub(crate) fn emit(self, line: &Line<'_>) {
        let text = if self.json {
            line.json().to_string()
        } else {
            line.text()
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// `cohort members` as a table: one row per member, aligned columns, the answering node
/// marked with `*`.
pub(crate) fn members_table(reply: &cohort_tokio::admin::MembersReply) -> String {
    let header = ["ID", "ADDRESS", "DC", "STATUS", "GENERATION", "KEYS"];
    let rows: Vec<[String; 6]> = reply
        .members
        .iter()
        .map(|m| {
            [
                if m.local {
                    format!("{} *", m.name)
                } else {
                    m.name.clone()
                },
                m.gossip_addr.clone(),
                m.data_center.clone(),
                m.status.clone(),
                m.generation.to_string(),
                m.keys.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// `cohort members --json`: the snapshot as one JSON object.
pub(crate) fn members_json(reply: &cohort_tokio::admin::MembersReply) -> Value {
    json!({
        "version": reply.version,
        "members": reply.members.iter().map(|m| json!({
            "id": m.id,
            "name": m.name,
            "generation": m.generation,
            "addr": m.gossip_addr,
            "rpc_addr": m.rpc_addr,
            "data_center": m.data_center,
            "status": m.status,
            "keys": m.keys,
            "local": m.local,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use cohort_tokio::MemberStatus;

    fn member(status: MemberStatus) -> Member {
        Member {
            id: NodeId::new("a", 7, "127.0.0.1:7000".parse().expect("an address")),
            status,
            heartbeat: 3,
            max_version: 2,
            keys: BTreeMap::from([("role".to_owned(), "indexer".to_owned())]),
        }
    }

    fn both(event: &Event) -> (String, Value) {
        let line = Line::from_event(event);
        (line.text(), line.json())
    }

    #[test]
    fn member_events_as_text_and_json() {
        let cases = [
            (Event::Joined(member(MemberStatus::Live)), "joined", "live"),
            (
                Event::Recovered(member(MemberStatus::Live)),
                "recovered",
                "live",
            ),
            (
                Event::Unready(member(MemberStatus::Unready)),
                "unready",
                "unready",
            ),
            (
                Event::Failed(member(MemberStatus::Failed)),
                "failed",
                "failed",
            ),
            (Event::Left(member(MemberStatus::Left)), "left", "left"),
        ];
        for (event, what, status) in cases {
            let (text, json) = both(&event);
            assert_eq!(text, format!("{what} a/7@127.0.0.1:7000"));
            assert_eq!(
                json,
                json!({"event": what, "member": {
                    "id": "a/7@127.0.0.1:7000", "name": "a", "generation": 7,
                    "addr": "127.0.0.1:7000", "status": status, "keys": {"role": "indexer"},
                }})
            );
        }
    }

    #[test]
    fn keys_set_and_deleted() {
        let set = Event::KeyChanged {
            member: member(MemberStatus::Live),
            key: "role".to_owned(),
            old: None,
            value: Some("indexer".to_owned()),
        };
        let (text, json) = both(&set);
        assert_eq!(text, "key a/7@127.0.0.1:7000 role=indexer");
        assert_eq!(json["event"], "key");
        assert_eq!(json["key"], "role");
        assert_eq!(json["value"], "indexer");
        assert_eq!(json["old"], Value::Null);
        assert_eq!(json["member"]["name"], "a");

        let deleted = Event::KeyChanged {
            member: member(MemberStatus::Live),
            key: "role".to_owned(),
            old: Some("indexer".to_owned()),
            value: None,
        };
        let (text, json) = both(&deleted);
        assert_eq!(text, "key a/7@127.0.0.1:7000 role");
        assert_eq!(json["value"], Value::Null);
        assert_eq!(json["old"], "indexer");
    }

    #[test]
    fn other_events() {
        let from: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        let id = member(MemberStatus::Live).id;
        let (text, json) = both(&Event::Removed(id.clone()));
        assert_eq!(text, "removed a/7@127.0.0.1:7000");
        assert_eq!(json["event"], "removed");
        assert_eq!(json["member"]["id"], "a/7@127.0.0.1:7000");
        assert_eq!(json["member"]["generation"], 7);

        let (text, json) = both(&Event::SelfSuspected);
        assert_eq!(
            (text.as_str(), json),
            ("suspect", json!({"event": "suspect"}))
        );

        let (text, json) = both(&Event::BadCluster {
            from,
            suppressed: 0,
        });
        assert_eq!(text, "bad-cluster 127.0.0.1:9");
        assert_eq!(
            json,
            json!({"event": "bad-cluster", "from": "127.0.0.1:9", "suppressed": 0})
        );
        let (text, json) = both(&Event::BadCluster {
            from,
            suppressed: 41,
        });
        assert_eq!(text, "bad-cluster 127.0.0.1:9 suppressed=41");
        assert_eq!(json["suppressed"], 41);
        let (text, json) = both(&Event::Unauthenticated {
            from,
            suppressed: 2,
        });
        assert_eq!(text, "unauthenticated 127.0.0.1:9 suppressed=2");
        assert_eq!(json["event"], "unauthenticated");
        let (text, json) = both(&Event::OverLimit {
            from,
            limit: Limit::Members,
            suppressed: 0,
        });
        assert_eq!(text, "over-limit 127.0.0.1:9 members");
        let (mismatch, mismatch_json) = both(&Event::ProtocolMismatch {
            from,
            theirs: Protocol::Chitchat,
            suppressed: 2,
        });
        assert_eq!(
            mismatch,
            "protocol-mismatch 127.0.0.1:9 theirs=chitchat suppressed=2"
        );
        assert_eq!(
            mismatch_json,
            json!({"event": "protocol-mismatch", "from": "127.0.0.1:9", "theirs": "chitchat", "suppressed": 2})
        );
        assert_eq!(
            json,
            json!({"event": "over-limit", "from": "127.0.0.1:9", "limit": "members", "suppressed": 0})
        );

        let line = Line::Members { live: 2, known: 3 };
        assert_eq!(line.text(), "members live=2 known=3");
        assert_eq!(
            line.json(),
            json!({"event": "members", "live": 2, "known": 3})
        );
        let lagged = Line::Lagged { missed: 4 };
        assert_eq!(lagged.text(), "lagged missed=4");
        assert_eq!(lagged.json(), json!({"event": "lagged", "missed": 4}));
        assert_eq!(Line::Stopped.text(), "stopped");
        assert_eq!(Line::Stopped.json(), json!({"event": "stopped"}));

        let addr = "127.0.0.1:5".parse().expect("an address");
        let rpc = "127.0.0.1:6".parse().expect("an address");
        let ready = Line::Ready {
            id: &id,
            listen: addr,
            rpc: Some(rpc),
        };
        assert_eq!(
            ready.text(),
            "ready id=a/7@127.0.0.1:7000 listen=127.0.0.1:5 rpc=127.0.0.1:6"
        );
        assert_eq!(
            ready.json(),
            json!({"event": "ready", "id": "a/7@127.0.0.1:7000", "listen": "127.0.0.1:5",
                   "rpc": "127.0.0.1:6"})
        );
        let no_rpc = Line::Ready {
            id: &id,
            listen: addr,
            rpc: None,
        };
        assert_eq!(
            no_rpc.text(),
            "ready id=a/7@127.0.0.1:7000 listen=127.0.0.1:5 rpc=none"
        );
        assert_eq!(no_rpc.json()["rpc"], Value::Null);
    }
}
