//! Node configuration: one TOML file per node, checked before anything binds.
//!
//! Every field is documented in `config/node.toml` and `config/hub.toml`.
//! Relative paths are taken relative to the directory the node is started
//! in. [`NodeConfig::validate`] names the field at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::class::Class;

/// A configuration that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or mistyped fields.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// A field has a value that cannot work.
    #[error("invalid `{field}`: {why}")]
    Invalid {
        /// Dotted field name.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// The TOML parser's error in one line for people: where (line and the
/// dotted field, when the error points at one) and what, with the
/// accepted values when the parser lists them. The parser's own text
/// spans several lines with a drawing of the spot.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().trim_end_matches('.');
    let what = match what.strip_prefix("unknown variant ") {
        Some(rest) => match rest.split_once(", expected one of ") {
            Some((got, accepted)) => format!(
                "{} is not accepted here; use one of {}",
                got.replace('`', "\""),
                accepted.replace('`', "\"")
            ),
            None => what.to_string(),
        },
        None => what.to_string(),
    };
    let Some(span) = e.span() else {
        return what;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    // The table this line belongs to: the last `[name]` or `[[name]]` above it.
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let field = match (table, key) {
        (Some(t), Some(k)) => format!("`{t}.{k}`"),
        (None, Some(k)) => format!("`{k}`"),
        (Some(t), None) => format!("[{t}]"),
        (None, None) => String::new(),
    };
    if field.is_empty() {
        format!("line {line_no}: {what}")
    } else {
        format!("line {line_no}, {field}: {what}")
    }
}

/// Paths of this node's identity and the region's trust material.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The region CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM); its URI SAN is the node id.
    pub cert: PathBuf,
    /// This node's Ed25519 private key (PEM, PKCS#8, mode 0600).
    pub key: PathBuf,
    /// The region CRL (PEM); re-read when it changes. When it is named it
    /// must exist and be signed by the CA, or the node does not start.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// Seconds a CRL past its `nextUpdate` is still used, with an alarm;
    /// after that the node refuses relay traffic until a fresh CRL arrives.
    #[serde(default = "default_crl_grace_secs")]
    pub crl_grace_secs: u64,
}

fn default_crl_grace_secs() -> u64 {
    24 * 3600
}

impl TlsConfig {
    /// The field of this section that names `path` (`tls` if none does).
    pub fn field_of(&self, path: &Path) -> &'static str {
        let (compat_cert, compat_key) = crate::trust::compat_paths(&self.cert);
        if path == self.ca {
            "tls.ca"
        } else if self.crl.as_deref() == Some(path) {
            "tls.crl"
        } else if path == self.key || path == compat_key {
            "tls.key"
        } else if path == self.cert || path == compat_cert {
            "tls.cert"
        } else {
            "tls"
        }
    }
}

/// The mTLS listener for child nodes and inbox consumers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayListen {
    /// Address to listen on, e.g. `0.0.0.0:7400`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Node ids (certificates) that may read this node's inbox, besides its
    /// own certificate. Children may forward here; they may not read.
    #[serde(default)]
    pub consumers: Vec<String>,
}

/// The local operator API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Unix socket path; default `<data_dir>/operator.sock`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Socket file mode (octal string); file permissions are the access control.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Also serve the operator API over TCP with mutual TLS at this address
    /// (for an operator console on another machine); absent = socket only.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Node ids (certificate URI SANs) allowed to use the TCP operator API.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Whether a local user whose uid is not in `[[operators]]` may use the
    /// socket (recorded by uid). With `false`, only listed operators may.
    #[serde(default = "yes")]
    pub allow_unlisted: bool,
}

fn yes() -> bool {
    true
}

/// What a member of staff may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Writes and sends reports, records the office's decisions.
    #[default]
    Staff,
    /// The office's director.
    Director,
    /// The director's deputy.
    Deputy,
}

impl StaffRole {
    /// The role's name, as in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Director => "director",
            Self::Deputy => "deputy",
        }
    }

    /// The role's name in Chinese.
    pub const fn name_zh(self) -> &'static str {
        match self {
            Self::Staff => "工作人员",
            Self::Director => "主任",
            Self::Deputy => "副主任",
        }
    }
}

/// A member of staff using the operator API: a local user of the socket,
/// known by uid, or a console on the TCP operator listener, known by its
/// certificate. Submissions, decisions and reviews record their name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The user's uid on this machine (the socket's peer credentials).
    /// Exactly one of `uid` and `cert` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Or: the node id of a console's certificate on the TCP operator
    /// listener (it must also be in `operator.allowed`), so that a director
    /// or deputy at another machine acts in their own name and role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The name recorded, e.g. "王芳".
    pub name: String,
    /// What they may do.
    #[serde(default)]
    pub role: StaffRole,
}

/// When an item of a class is reviewed by the office's leader (把关).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewMode {
    /// Not reviewed: sent at once.
    #[default]
    None,
    /// Held, unsigned, until a director or deputy approves it (or the
    /// timeouts pass): never for emergencies, which never wait.
    BeforeSend,
    /// Sent at once; a director or deputy signs it off afterwards, in a
    /// signed sign-off report linked to it.
    AfterSend,
}

impl ReviewMode {
    /// The mode's name, as in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::BeforeSend => "before_send",
            Self::AfterSend => "after_send",
        }
    }
}

/// How one class is reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassReview {
    /// `none` (default), `before_send` or `after_send`.
    #[serde(default)]
    pub mode: ReviewMode,
    /// Seconds the director has before the item is offered to the deputy,
    /// and again seconds the deputy has before it goes without review. The
    /// class deadline cuts both short: an item is never held past it.
    #[serde(default = "default_review_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_review_timeout_secs() -> u64 {
    1800
}

impl Default for ClassReview {
    fn default() -> Self {
        Self {
            mode: ReviewMode::None,
            timeout_secs: default_review_timeout_secs(),
        }
    }
}

/// `[review]`: review before sending (把关), per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// Emergencies: `none` or `after_send` only.
    pub emergency: ClassReview,
    /// Bad news (报忧).
    pub bad_news: ClassReview,
    /// Routine news.
    pub routine: ClassReview,
}

impl ReviewConfig {
    /// How `class` is reviewed.
    pub const fn of(&self, class: Class) -> ClassReview {
        match class {
            Class::Emergency => self.emergency,
            Class::BadNews => self.bad_news,
            Class::Routine => self.routine,
        }
    }

    /// Checks the section against the operators who could review.
    fn validate(&self, operators: &[Operator]) -> Result<(), ConfigError> {
        let invalid = |field, why: String| ConfigError::Invalid { field, why };
        if self.emergency.mode == ReviewMode::BeforeSend {
            return Err(invalid(
                "review.emergency.mode",
                "emergencies never wait: use \"none\" or \"after_send\"".into(),
            ));
        }
        let reviewers = operators
            .iter()
            .any(|op| matches!(op.role, StaffRole::Director | StaffRole::Deputy));
        for (class, mode_field, timeout_field) in [
            (
                Class::Emergency,
                "review.emergency.mode",
                "review.emergency.timeout_secs",
            ),
            (
                Class::BadNews,
                "review.bad_news.mode",
                "review.bad_news.timeout_secs",
            ),
            (
                Class::Routine,
                "review.routine.mode",
                "review.routine.timeout_secs",
            ),
        ] {
            let c = self.of(class);
            if !(1..=7 * 24 * 3600).contains(&c.timeout_secs) {
                return Err(invalid(
                    timeout_field,
                    "must be between 1 second and 7 days".into(),
                ));
            }
            if c.mode != ReviewMode::None && !reviewers {
                return Err(invalid(
                    mode_field,
                    format!(
                        "{} needs a reviewer: no operator in [[operators]] has role \"director\" or \"deputy\"",
                        c.mode.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn default_socket_mode() -> String {
    "0660".into()
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            socket: None,
            socket_mode: default_socket_mode(),
            listen: None,
            allowed: Vec::new(),
            allow_unlisted: true,
        }
    }
}

/// What a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every item goes this way.
    #[default]
    Primary,
    /// Another hub at the same level: emergencies always, other items when
    /// they are escalated.
    Alternate,
    /// A hub above the region (直报 skips layers): emergencies always,
    /// other items when they are escalated.
    Skip,
}

/// One route upstream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream's node id; its certificate must name it. Also the route's name.
    pub node_id: String,
    /// `host:port` of the upstream's relay listener.
    pub addr: String,
    /// `primary` (default), `alternate` or `skip`.
    #[serde(default)]
    pub role: Role,
}

/// `[upstream]` (one route) or `[[upstream]]` (several). Not an untagged
/// enum: that would hide why a route does not parse (a bad `role` came out
/// as "did not match any variant of untagged enum"); a visitor passes the
/// route's own error, naming the field and the accepted values, through.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<UpstreamConfig>, D::Error> {
    struct Routes;
    impl<'de> serde::de::Visitor<'de> for Routes {
        type Value = Vec<UpstreamConfig>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an [upstream] table or [[upstream]] tables")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            UpstreamConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(|u| vec![u])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(Routes)
}

/// Bounds on everything that comes from outside.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded report accepted (operator body included), bytes.
    pub max_report_bytes: usize,
    /// Largest title, bytes.
    pub max_title_bytes: usize,
    /// Items sent upstream and not yet receipted, per stream; also how many
    /// items of one incoming stream are processed at once.
    pub max_in_flight: usize,
    /// Relay connections at once, all peers.
    pub max_connections: usize,
    /// Relay connections at once from one node.
    pub max_connections_per_peer: usize,
    /// TLS handshakes in progress at once (connections not yet
    /// authenticated); when full, the oldest is dropped for the newest.
    pub max_handshakes: usize,
    /// Seconds allowed for a TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Longest wait, seconds, between reconnection attempts to upstream.
    pub max_backoff_secs: u64,
    /// Largest total of attachments on one report, bytes.
    pub max_attachment_bytes: u64,
    /// Attachments travel in chunks of this many bytes (set by the origin).
    pub chunk_bytes: u32,
    /// Partial uploads (attachments announced, not complete) one child may
    /// have at once.
    pub max_uploads_per_peer: usize,
    /// Bytes of partial uploads one child may hold on disk.
    pub max_upload_bytes_per_peer: u64,
    /// Seconds a partial upload may go untouched before it is reclaimed.
    pub upload_idle_secs: u64,
    /// Bytes of one child's messages received and not yet answered, all its
    /// streams together: what one child can make this node hold in memory.
    /// Its routine messages may hold half of it; the other half is kept for
    /// its emergency and bad-news items.
    pub max_bytes_in_flight_per_peer: usize,
    /// Items of one child being handled at once, all its streams together.
    /// Its routine items may be three quarters of them; the rest are kept
    /// for its emergency and bad-news items.
    pub max_items_in_flight_per_peer: usize,
    /// Bytes of routine messages from all children received and not yet
    /// answered: what the whole node holds in memory for them, whatever
    /// the load. Emergency and bad-news items are held only against their
    /// child's share, so they never wait behind routine ones for room.
    pub max_bytes_in_flight: usize,
    /// HTTP/2 streams at once on one connection.
    pub max_streams_per_connection: u32,
    /// New items and attachments are refused (RESOURCE_EXHAUSTED) while
    /// less than this many bytes are free where the store is, so the disk
    /// never fills in the middle of a commit; what is stored still moves on.
    pub min_free_disk_bytes: u64,
    /// Bytes of the store's log after which it goes on in a new file (a
    /// segment), 64 KiB to 64 MiB. The log keeps the reports it made
    /// durable, and a segment's file is deleted once every report in it is
    /// pruned: smaller segments give disk back sooner after pruning, at the
    /// cost of a full commit and a new file (written out with zeros ahead,
    /// in the background) each time.
    pub log_segment_bytes: u64,
    /// Seconds between signed checkpoints of the custody log (when it grew).
    pub audit_checkpoint_secs: u64,
    /// Days the custody log's records are kept; older ones are deleted, but
    /// only through a signed checkpoint, so what is kept still verifies.
    /// 0 (the default) keeps everything.
    pub audit_retention_days: u64,
    /// Seconds between HTTP/2 pings on every connection, idle or not.
    pub keepalive_secs: u64,
    /// Seconds a ping may go unanswered before the connection is dropped:
    /// a silently dead link is found within the two together.
    pub keepalive_timeout_secs: u64,
    /// Seconds a report may be dated ahead of this node's clock.
    pub max_clock_skew_secs: u64,
    /// Days a report may have travelled (waited at a county, in relays)
    /// before it is refused as too old.
    pub max_report_age_days: u64,
    /// Seconds a durable inbox consumer has to acknowledge an item before
    /// it is sent again (on the same stream).
    pub inbox_ack_wait_secs: u64,
    /// Items sent to one durable inbox consumer and not yet acknowledged,
    /// at most: nothing more is sent to it until acknowledgements come.
    pub inbox_max_unacked: usize,
    /// Held notices (items held past their deadline below) a node keeps at
    /// most: beyond it, a child's notice is refused with
    /// RESOURCE_EXHAUSTED, so a child cannot fill the store with them.
    pub max_held_notices: u64,
    /// An operator's new item may go up while this node's own commit of it
    /// is still going to the disk, when the route has nothing else to do
    /// (see `node::forward::early`): one operator's end-to-end time less
    /// one `fdatasync`. Nobody is answered sooner either way; with `false`
    /// an item goes up only once it is stored here, so a crash in that
    /// moment can never leave a copy upstream that this node does not hold.
    pub send_while_storing: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_report_bytes: 1024 * 1024,
            max_title_bytes: 1024,
            max_in_flight: 64,
            max_connections: 1024,
            max_connections_per_peer: 16,
            max_handshakes: 64,
            handshake_timeout_secs: 5,
            max_backoff_secs: 10,
            max_attachment_bytes: 64 * 1024 * 1024,
            chunk_bytes: 64 * 1024,
            max_uploads_per_peer: 16,
            max_upload_bytes_per_peer: 256 * 1024 * 1024,
            upload_idle_secs: 3600,
            max_bytes_in_flight_per_peer: 64 * 1024 * 1024,
            max_items_in_flight_per_peer: 256,
            // 16 MiB: at 64 streams × 32 of 256 KiB reports, a hub's peak
            // RSS 190 MiB against 233-238 at 32 MiB, at the same MiB/s
            // (the README's window AH).
            max_bytes_in_flight: 16 * 1024 * 1024,
            max_streams_per_connection: 8,
            min_free_disk_bytes: 64 * 1024 * 1024,
            log_segment_bytes: crate::store::LOG_SEGMENT_BYTES,
            audit_checkpoint_secs: 60,
            audit_retention_days: 0,
            keepalive_secs: 2,
            keepalive_timeout_secs: 3,
            max_clock_skew_secs: 300,
            max_report_age_days: 30,
            inbox_ack_wait_secs: 30,
            inbox_max_unacked: 256,
            max_held_notices: 100_000,
            send_while_storing: true,
        }
    }
}

impl Limits {
    /// How connections upstream are made and kept.
    pub fn connect_options(&self) -> crate::tls::ConnectOptions {
        crate::tls::ConnectOptions {
            connect_timeout: std::time::Duration::from_secs(self.handshake_timeout_secs),
            keepalive_interval: std::time::Duration::from_secs(self.keepalive_secs),
            keepalive_timeout: std::time::Duration::from_secs(self.keepalive_timeout_secs),
        }
    }

    /// The bounds every report is opened with.
    pub fn report_limits(&self) -> crate::envelope::Limits {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        crate::envelope::Limits {
            max_report_bytes: self.max_report_bytes,
            max_attachment_bytes: self.max_attachment_bytes,
            max_title_bytes: self.max_title_bytes,
            max_clock_skew_ms: ms(self.max_clock_skew_secs),
            max_age_ms: ms(self.max_report_age_days.saturating_mul(24 * 3600)),
        }
    }
}

/// Receipt deadlines per class.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    /// Emergency: reported within the first moment. Seconds after submission.
    pub emergency_secs: u64,
    /// Bad news: edited and sent at once. Seconds after submission.
    pub bad_news_secs: u64,
    /// Routine: seconds after submission; absent = the end of the local day
    /// it was submitted on (today's news today).
    pub routine_secs: Option<u64>,
    /// The local time zone, as an offset from UTC (`+08:00`), for "end of day".
    pub utc_offset: String,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            emergency_secs: 60,
            bad_news_secs: 600,
            routine_secs: None,
            utc_offset: "+08:00".into(),
        }
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Deadlines {
    /// The UTC offset in milliseconds.
    pub fn offset_ms(&self) -> Result<i64, ConfigError> {
        let bad = || ConfigError::Invalid {
            field: "deadlines.utc_offset",
            why: format!("{:?} is not an offset like +08:00", self.utc_offset),
        };
        let s = self.utc_offset.as_str();
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(sign * (h * 3600 + m * 60) * 1000)
    }

    /// The receipt deadline, Unix ms, of an item of `class` created at `created_ms`.
    pub fn deadline_ms(&self, class: Class, created_ms: i64) -> i64 {
        let secs = match class {
            Class::Emergency => self.emergency_secs,
            Class::BadNews => self.bad_news_secs,
            Class::Routine => match self.routine_secs {
                Some(s) => s,
                None => {
                    // Checked all the way: a hostile creation time near
                    // i64::MAX or MIN must give an extreme deadline, never
                    // a wrapped one.
                    let offset = self.offset_ms().unwrap_or(0);
                    let local = created_ms.saturating_add(offset);
                    return local
                        .div_euclid(DAY_MS)
                        .saturating_add(1)
                        .saturating_mul(DAY_MS)
                        .saturating_sub(offset);
                }
            },
        };
        created_ms.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000))
    }

    /// The receipt deadline stamped into an item created at `created_ms`:
    /// the one it asks for (`asked_ms`, 0 = none), never later than its
    /// class allows here.
    pub fn receipt_deadline(&self, class: Class, created_ms: i64, asked_ms: i64) -> i64 {
        let class_deadline = self.deadline_ms(class, created_ms);
        if asked_ms > 0 {
            asked_ms.min(class_deadline)
        } else {
            class_deadline
        }
    }
}

/// A node's whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; must equal the id in its certificate.
    pub node_id: String,
    /// Directory for the store and the operator socket.
    pub data_dir: PathBuf,
    /// Identity and trust.
    pub tls: TlsConfig,
    /// Relay listener (children, inbox consumers); absent = none.
    #[serde(default)]
    pub relay: Option<RelayListen>,
    /// Operator API.
    #[serde(default)]
    pub operator: OperatorConfig,
    /// Routes to forward on; none = this node is a hub (items go to its inbox).
    #[serde(default, deserialize_with = "one_or_many")]
    pub upstream: Vec<UpstreamConfig>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Per-class receipt deadlines.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// Local users of the operator socket, by uid, and consoles on the
    /// TCP operator listener, by certificate.
    #[serde(default)]
    pub operators: Vec<Operator>,
    /// Review before sending (把关), per class; default: none.
    #[serde(default)]
    pub review: ReviewConfig,
    /// The office: whose solicitations and bulletins this node takes; at
    /// a hub, its counties, outlets, scoring rules and targets.
    #[serde(default)]
    pub office: OfficeConfig,
    /// How long delivered items' bodies and attachments stay here.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// How `zhibao serve` logs (`--log-format` overrides).
    #[serde(default)]
    pub log: LogConfig,
    /// The office's web desk (`[web]`); absent = none.
    #[serde(default)]
    pub web: Option<crate::web::WebConfig>,
    /// Prometheus metrics endpoint; off unless `listen` is set.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: where Prometheus scrapes this node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (plain HTTP, the Prometheus text format) at
    /// this address; absent = no metrics listener. Bind it to loopback or
    /// a management network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// A file holding a secret every scrape must send as `Authorization:
    /// Bearer <secret>` (Prometheus: `authorization: { credentials_file:
    /// ... }` naming the same file); absent = scrapes are not
    /// authenticated. Read at start: a file that is missing, unreadable or
    /// empty stops the start, naming `metrics.token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// `[log]`: how the node writes its log.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default, for people) or `json` (one object per line).
    #[serde(default)]
    pub format: crate::telemetry::LogFormat,
}

/// `[retention]`: what happens to an item's body and attachments once its
/// job here is done. Receipts, decisions, the digest and the custody log
/// always stay; an item not yet delivered is never touched.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// At a node with routes: `prune` the bodies and attachments of items
    /// the final hub has, `delivered_secs` after their first receipt; or
    /// `keep` them.
    pub delivered: DeliveredRetention,
    /// Seconds a delivered item's body stays at a node with routes.
    pub delivered_secs: u64,
    /// At the final hub: `archive` items (into monthly files under
    /// `<data_dir>/archive/`, then pruned from the store) `archive_secs`
    /// after they were stored; or `keep` everything in the store.
    pub hub: HubRetention,
    /// Seconds an item stays in the hub's store before it is archived.
    pub archive_secs: u64,
}

/// `retention.delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveredRetention {
    /// Prune bodies and attachments after `delivered_secs`.
    Prune,
    /// Keep everything.
    Keep,
}

/// `retention.hub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HubRetention {
    /// Archive, then prune, after `archive_secs`.
    Archive,
    /// Keep everything in the store.
    Keep,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            delivered: DeliveredRetention::Prune,
            // A week: long enough to answer questions on what was sent.
            delivered_secs: 7 * 86_400,
            hub: HubRetention::Archive,
            // Over a year, so last year's figures stay in the store.
            archive_secs: 400 * 86_400,
        }
    }
}

impl RetentionConfig {
    /// The rule for a node with routes (`has_routes`) or the final hub;
    /// `None` when it keeps everything.
    pub fn rule(&self, has_routes: bool) -> Option<crate::store::Retention> {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        match (has_routes, self.delivered, self.hub) {
            (true, DeliveredRetention::Prune, _) => Some(crate::store::Retention::Delivered {
                keep_ms: ms(self.delivered_secs),
            }),
            (false, _, HubRetention::Archive) => Some(crate::store::Retention::Archive {
                keep_ms: ms(self.archive_secs),
            }),
            _ => None,
        }
    }
}

/// `[office]`: notices from above, and a hub's scoring.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeConfig {
    /// Node ids whose solicitations and bulletins this node takes, keeps
    /// and passes on to its children (the hub at the top of the tree).
    /// A notice signed by any other node is refused with an alarm.
    #[serde(default)]
    pub publishers: Vec<String>,
    /// At a publishing hub: the region's counties (node ids), asked by a
    /// solicitation "to all" and listed in the figures even in a month
    /// they sent nothing. Every county seen sending is counted too.
    #[serde(default)]
    pub counties: Vec<String>,
    /// At a hub: the publications an adopted report can go into.
    #[serde(default)]
    pub outlets: Vec<crate::score::Outlet>,
    /// At a hub: point rule sets, each in force from its `since` date.
    #[serde(default)]
    pub scoring: Vec<crate::score::ScoringRule>,
    /// At a hub: yearly targets per county (`zhibao target set` overrides).
    #[serde(default)]
    pub targets: Vec<crate::score::Target>,
}

impl OfficeConfig {
    /// The scoring rules of this section.
    pub fn rules(&self) -> crate::score::OfficeRules {
        crate::score::OfficeRules {
            outlets: self.outlets.clone(),
            scoring: self.scoring.clone(),
            targets: self.targets.clone(),
        }
    }
}

impl NodeConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&text, &e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The operator socket path.
    pub fn operator_socket(&self) -> PathBuf {
        self.operator
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("operator.sock"))
    }

    /// The operator socket mode as a number.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.operator.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| ConfigError::Invalid {
                field: "operator.socket_mode",
                why: format!("{:?} is not an octal file mode", self.operator.socket_mode),
            })
    }

    /// Checks every field that could make the node misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, why: String| ConfigError::Invalid { field, why };
        crate::trust::validate_node_id(&self.node_id)
            .map_err(|e| invalid("node_id", e.to_string()))?;
        self.socket_mode()?;
        if self.operator.listen.is_some() && self.operator.allowed.is_empty() {
            return Err(invalid(
                "operator.allowed",
                "operator.listen is set but no certificate is allowed to use it".into(),
            ));
        }
        if self.metrics.token_file.is_some() && self.metrics.listen.is_none() {
            return Err(invalid(
                "metrics.token_file",
                "metrics.token_file is set but metrics.listen is not: there is nothing to guard"
                    .into(),
            ));
        }
        for id in self.relay.iter().flat_map(|r| &r.consumers) {
            crate::trust::validate_node_id(id)
                .map_err(|e| invalid("relay.consumers", e.to_string()))?;
        }
        let mut uids = std::collections::HashSet::new();
        let mut certs = std::collections::HashSet::new();
        for op in &self.operators {
            let who = match (op.uid, &op.cert) {
                (Some(uid), None) => {
                    if !uids.insert(uid) {
                        return Err(invalid(
                            "operators.uid",
                            format!("uid {uid} is listed twice"),
                        ));
                    }
                    format!("uid {uid}")
                }
                (None, Some(cert)) => {
                    crate::trust::validate_node_id(cert)
                        .map_err(|e| invalid("operators.cert", e.to_string()))?;
                    if !self.operator.allowed.contains(cert) {
                        return Err(invalid(
                            "operators.cert",
                            format!("certificate {cert:?} is not in operator.allowed"),
                        ));
                    }
                    if !certs.insert(cert.as_str()) {
                        return Err(invalid(
                            "operators.cert",
                            format!("certificate {cert:?} is listed twice"),
                        ));
                    }
                    format!("certificate {cert}")
                }
                _ => {
                    return Err(invalid(
                        "operators.uid",
                        format!("operator {:?}: give exactly one of uid and cert", op.name),
                    ));
                }
            };
            let name = op.name.trim();
            if name.is_empty() || name.len() > crate::disposition::MAX_STAFF_BYTES {
                return Err(invalid(
                    "operators.name",
                    format!(
                        "{who}: a name of 1 to {} bytes is needed",
                        crate::disposition::MAX_STAFF_BYTES
                    ),
                ));
            }
        }
        self.review.validate(&self.operators)?;
        if let Some(web) = &self.web {
            web.validate(self.relay.is_some())?;
        }
        for id in &self.operator.allowed {
            crate::trust::validate_node_id(id)
                .map_err(|e| invalid("operator.allowed", e.to_string()))?;
        }
        for id in &self.office.publishers {
            crate::trust::validate_node_id(id)
                .map_err(|e| invalid("office.publishers", e.to_string()))?;
        }
        for id in &self.office.counties {
            crate::trust::validate_node_id(id)
                .map_err(|e| invalid("office.counties", e.to_string()))?;
        }
        self.office
            .rules()
            .validate()
            .map_err(|e| invalid("office", e.to_string()))?;
        let l = &self.limits;
        if l.max_report_bytes < 1024 || l.max_report_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_report_bytes",
                "must be between 1 KiB and 64 MiB".into(),
            ));
        }
        if l.max_title_bytes == 0 || l.max_title_bytes > 64 * 1024 {
            return Err(invalid(
                "limits.max_title_bytes",
                "must be between 1 and 65536".into(),
            ));
        }
        if l.max_in_flight == 0 || l.max_in_flight > 4096 {
            return Err(invalid(
                "limits.max_in_flight",
                "must be between 1 and 4096".into(),
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid(
                "limits.max_connections",
                "must be at least 1".into(),
            ));
        }
        if l.max_connections_per_peer == 0 {
            return Err(invalid(
                "limits.max_connections_per_peer",
                "must be at least 1".into(),
            ));
        }
        if l.max_handshakes == 0 {
            return Err(invalid(
                "limits.max_handshakes",
                "must be at least 1".into(),
            ));
        }
        if l.handshake_timeout_secs == 0 {
            return Err(invalid(
                "limits.handshake_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        if l.max_attachment_bytes > 1 << 30 {
            return Err(invalid(
                "limits.max_attachment_bytes",
                "must be at most 1 GiB".into(),
            ));
        }
        if !(64 << 10..=crate::store::LOG_SEGMENT_BYTES).contains(&l.log_segment_bytes) {
            return Err(invalid(
                "limits.log_segment_bytes",
                "must be between 64 KiB and 64 MiB (the most the log takes between two full commits)"
                    .into(),
            ));
        }
        if !(1024..=1024 * 1024).contains(&l.chunk_bytes) {
            return Err(invalid(
                "limits.chunk_bytes",
                "must be between 1 KiB and 1 MiB".into(),
            ));
        }
        if l.max_upload_bytes_per_peer < l.max_attachment_bytes {
            return Err(invalid(
                "limits.max_upload_bytes_per_peer",
                "must be at least limits.max_attachment_bytes (one whole upload)".into(),
            ));
        }
        // Room for the largest message a child may send: a report, or a chunk.
        let largest = l.max_report_bytes.max(l.chunk_bytes as usize) + 64 * 1024;
        for (field, v) in [
            (
                "limits.max_bytes_in_flight_per_peer",
                l.max_bytes_in_flight_per_peer,
            ),
            ("limits.max_bytes_in_flight", l.max_bytes_in_flight),
        ] {
            if v < 2 * largest {
                return Err(invalid(
                    field,
                    "must be at least twice the largest message (max_report_bytes or chunk_bytes)"
                        .into(),
                ));
            }
        }
        for (field, v) in [
            ("limits.max_uploads_per_peer", l.max_uploads_per_peer as u64),
            (
                "limits.max_items_in_flight_per_peer",
                l.max_items_in_flight_per_peer as u64,
            ),
            (
                "limits.max_streams_per_connection",
                u64::from(l.max_streams_per_connection),
            ),
            ("limits.upload_idle_secs", l.upload_idle_secs),
            ("limits.audit_checkpoint_secs", l.audit_checkpoint_secs),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        for (field, v) in [
            ("limits.keepalive_secs", l.keepalive_secs),
            ("limits.keepalive_timeout_secs", l.keepalive_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(invalid(field, "must be between 1 and 3600 seconds".into()));
            }
        }
        if l.max_clock_skew_secs > 24 * 3600 {
            return Err(invalid(
                "limits.max_clock_skew_secs",
                "must be at most a day".into(),
            ));
        }
        if !(1..=3650).contains(&l.max_report_age_days) {
            return Err(invalid(
                "limits.max_report_age_days",
                "must be between 1 and 3650".into(),
            ));
        }
        if !(1..=24 * 3600).contains(&l.inbox_ack_wait_secs) {
            return Err(invalid(
                "limits.inbox_ack_wait_secs",
                "must be between 1 second and a day".into(),
            ));
        }
        if !(1..=65_536).contains(&l.inbox_max_unacked) {
            return Err(invalid(
                "limits.inbox_max_unacked",
                "must be between 1 and 65536".into(),
            ));
        }
        if self.tls.crl_grace_secs > 30 * 24 * 3600 {
            return Err(invalid(
                "tls.crl_grace_secs",
                "must be at most 30 days".into(),
            ));
        }
        if l.max_backoff_secs == 0 {
            return Err(invalid(
                "limits.max_backoff_secs",
                "must be at least 1".into(),
            ));
        }
        let d = &self.deadlines;
        d.offset_ms()?;
        for (field, v) in [
            ("deadlines.emergency_secs", d.emergency_secs),
            ("deadlines.bad_news_secs", d.bad_news_secs),
            ("deadlines.routine_secs", d.routine_secs.unwrap_or(1)),
        ] {
            if v == 0 || v > 7 * 24 * 3600 {
                return Err(invalid(field, "must be between 1 second and 7 days".into()));
            }
        }
        let mut names = std::collections::HashSet::new();
        if !self.upstream.is_empty() && !self.upstream.iter().any(|u| u.role == Role::Primary) {
            return Err(invalid(
                "upstream.role",
                "at least one route must be primary".into(),
            ));
        }
        for up in &self.upstream {
            crate::trust::validate_node_id(&up.node_id)
                .map_err(|e| invalid("upstream.node_id", e.to_string()))?;
            if !names.insert(up.node_id.as_str()) {
                return Err(invalid(
                    "upstream.node_id",
                    format!("route {:?} is listed twice", up.node_id),
                ));
            }
            if up.node_id == self.node_id {
                return Err(invalid(
                    "upstream.node_id",
                    "a node cannot forward to itself".into(),
                ));
            }
            if !up.addr.contains(':') {
                return Err(invalid(
                    "upstream.addr",
                    format!("{:?} is not host:port", up.addr),
                ));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, for writing a file another process reads.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Invalid {
            field: "(whole file)",
            why: e.to_string(),
        })
    }

    /// A minimal configuration for tests and the demo: certificates from
    /// `pki_dir` (as written by `certs init`), data under `data_dir`.
    pub fn for_node(node_id: &str, pki_dir: &Path, data_dir: &Path) -> Self {
        let (cert, key) = crate::trust::node_paths(pki_dir, node_id);
        Self {
            node_id: node_id.to_string(),
            data_dir: data_dir.to_path_buf(),
            tls: TlsConfig {
                ca: pki_dir.join(crate::trust::CA_CERT),
                cert,
                key,
                crl: Some(pki_dir.join(crate::trust::CRL)),
                crl_grace_secs: default_crl_grace_secs(),
            },
            relay: None,
            operator: OperatorConfig::default(),
            upstream: Vec::new(),
            limits: Limits::default(),
            deadlines: Deadlines::default(),
            operators: Vec::new(),
            office: OfficeConfig::default(),
            metrics: MetricsConfig::default(),
            review: ReviewConfig::default(),
            retention: RetentionConfig::default(),
            log: LogConfig::default(),
            web: None,
        }
    }

    /// What logging needs before the configuration is loaded for real: its
    /// `[log]` section and local time offset (seconds east of UTC), read
    /// leniently from `path`. Anything missing or unreadable gives the
    /// defaults: the full load that follows reports what is wrong.
    pub fn peek_log(path: &Path) -> (LogConfig, i32) {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Peek {
            log: Option<LogConfig>,
            deadlines: Option<toml::Table>,
        }
        let peek: Peek = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
        let offset = peek
            .deadlines
            .and_then(|d| d.get("utc_offset")?.as_str().map(str::to_string))
            .map_or_else(
                || Deadlines::default().offset_ms(),
                |utc_offset| {
                    Deadlines {
                        utc_offset,
                        ..Deadlines::default()
                    }
                    .offset_ms()
                },
            )
            .unwrap_or(0);
        (
            peek.log.unwrap_or_default(),
            i32::try_from(offset / 1000).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: parse_message(text, &e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    const BASE: &str = r#"
node_id = "county-a"
data_dir = "data/county-a"
[tls]
ca = "certs/ca.pem"
cert = "certs/county-a.pem"
key = "certs/county-a.key"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = parse(BASE).unwrap();
        assert_eq!(cfg.limits.max_in_flight, 64);
        assert_eq!(
            cfg.operator_socket(),
            PathBuf::from("data/county-a/operator.sock")
        );
        assert_eq!(cfg.socket_mode().unwrap(), 0o660);
        assert!(cfg.upstream.is_empty());
    }

    #[test]
    fn one_or_many_routes() {
        let one = parse(&format!(
            "{BASE}[upstream]\nnode_id = \"hub\"\naddr = \"h:1\"\n"
        ))
        .unwrap();
        assert_eq!(one.upstream.len(), 1);
        assert_eq!(one.upstream[0].role, Role::Primary);
        let many = parse(&format!(
            "{BASE}[[upstream]]\nnode_id = \"hub\"\naddr = \"h:1\"\n[[upstream]]\nnode_id = \"hub2\"\naddr = \"h:2\"\nrole = \"alternate\"\n"
        ))
        .unwrap();
        assert_eq!(many.upstream[1].role, Role::Alternate);
        let err = parse(&format!(
            "{BASE}[upstream]\nnode_id = \"hub\"\naddr = \"h:1\"\nrole = \"skip\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("primary"), "{err}");
    }

    #[test]
    fn writes_what_it_reads() {
        let mut cfg = parse(&format!(
            "{BASE}[upstream]\nnode_id = \"hub\"\naddr = \"h:1\"\n"
        ))
        .unwrap();
        cfg.limits.max_in_flight = 7;
        let again = parse(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(again.limits.max_in_flight, 7);
        assert_eq!(again.upstream[0].node_id, "hub");
    }

    #[test]
    fn routine_deadline_is_the_end_of_the_local_day() {
        let d = Deadlines::default(); // +08:00
        // 2026-11-25 15:00 UTC = 23:00 in +08:00: one hour left.
        let created = 1_795_618_800_000;
        assert_eq!(
            d.deadline_ms(Class::Routine, created) - created,
            3600 * 1000
        );
        assert_eq!(
            d.deadline_ms(Class::Emergency, created) - created,
            60 * 1000
        );
        let bad = Deadlines {
            utc_offset: "8".into(),
            ..Deadlines::default()
        };
        assert!(bad.offset_ms().is_err());
    }

    #[test]
    fn deadlines_of_extreme_creation_times_do_not_wrap() {
        let d = Deadlines::default();
        for class in Class::ALL {
            assert!(
                d.deadline_ms(class, i64::MAX) >= i64::MAX - DAY_MS,
                "{class}"
            );
            assert!(
                d.deadline_ms(class, i64::MIN) <= i64::MIN + 2 * DAY_MS,
                "{class}"
            );
            assert!(d.deadline_ms(class, 0) > 0, "{class}");
        }
    }

    #[test]
    fn review_modes_are_checked() {
        let ops = "[[operators]]\nuid = 1000\nname = \"张主任\"\nrole = \"director\"\n";
        let err = parse(&format!(
            "{BASE}{ops}[review]\nemergency = {{ mode = \"before_send\" }}\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("review.emergency.mode"), "{err}");
        let err = parse(&format!(
            "{BASE}[review]\nbad_news = {{ mode = \"before_send\" }}\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("review.bad_news.mode"), "{err}");
        let err = parse(&format!(
            "{BASE}{ops}[review]\nroutine = {{ mode = \"before_send\", timeout_secs = 0 }}\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("review.routine.timeout_secs"),
            "{err}"
        );
        let cfg = parse(&format!(
            "{BASE}{ops}[review]\nemergency = {{ mode = \"after_send\", timeout_secs = 120 }}\nbad_news = {{ mode = \"before_send\", timeout_secs = 120 }}\n"
        ))
        .unwrap();
        assert_eq!(cfg.review.of(Class::BadNews).mode, ReviewMode::BeforeSend);
        assert_eq!(cfg.review.of(Class::Routine).mode, ReviewMode::None);
        let again = parse(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(again.review, cfg.review);
    }

    #[test]
    fn console_operators_are_known_by_listed_certificates() {
        let console =
            "[[operators]]\ncert = \"console-dir\"\nname = \"张主任\"\nrole = \"director\"\n";
        let err = parse(&format!("{BASE}{console}")).unwrap_err();
        assert!(err.to_string().contains("operators.cert"), "{err}");
        let cfg = parse(&format!(
            "{BASE}[operator]\nlisten = \"127.0.0.1:0\"\nallowed = [\"console-dir\"]\n{console}"
        ))
        .unwrap();
        assert_eq!(cfg.operators[0].cert.as_deref(), Some("console-dir"));
        let err = parse(&format!(
            "{BASE}[[operators]]\nuid = 1\ncert = \"x\"\nname = \"a\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(&format!("{BASE}[limits]\nmax_in_flight = 0\n")).unwrap_err();
        assert!(err.to_string().contains("limits.max_in_flight"), "{err}");
        let err = parse(&format!(
            "{BASE}[upstream]\nnode_id = \"county-a\"\naddr = \"x:1\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("upstream.node_id"), "{err}");
        let err = parse(&format!("{BASE}bogus = 1\n")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = parse(&BASE.replace("county-a\"\ndata", "County A\"\ndata")).unwrap_err();
        assert!(err.to_string().contains("node_id"), "{err}");
        for bytes in [65535, (64 << 20) + 1] {
            let err = parse(&format!("{BASE}[limits]\nlog_segment_bytes = {bytes}\n")).unwrap_err();
            assert!(
                err.to_string().contains("limits.log_segment_bytes"),
                "{err}"
            );
        }
        let cfg = parse(&format!("{BASE}[limits]\nlog_segment_bytes = 65536\n")).unwrap();
        assert_eq!(cfg.limits.log_segment_bytes, 65536);
    }

    #[test]
    fn a_parse_error_is_one_line_with_the_field_and_the_accepted_values() {
        for upstream in [
            "[upstream]\nnode_id = \"hub\"\naddr = \"h:1\"\nrole = \"main\"\n",
            "[[upstream]]\nnode_id = \"hub\"\naddr = \"h:1\"\nrole = \"main\"\n",
        ] {
            let err = parse(&format!("{BASE}{upstream}")).unwrap_err().to_string();
            assert!(!err.contains('\n') && !err.contains("untagged"), "{err}");
            assert!(
                err.contains("`upstream.role`")
                    && err.contains(
                        r#""main" is not accepted here; use one of "primary", "alternate", "skip""#
                    ),
                "{err}"
            );
        }
    }

    #[test]
    fn logging_peeks_at_its_section_and_the_offset_before_the_real_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("n.toml");
        std::fs::write(
            &path,
            "[log]\nformat = \"json\"\n[deadlines]\nutc_offset = \"-03:30\"\n",
        )
        .unwrap();
        let (log, offset) = NodeConfig::peek_log(&path);
        assert_eq!(log.format, crate::telemetry::LogFormat::Json);
        assert_eq!(offset, -(3 * 3600 + 30 * 60));
        // Missing or broken: the defaults (text, +08:00); the real load reports it.
        let (log, offset) = NodeConfig::peek_log(&dir.join("absent.toml"));
        assert_eq!(
            (log.format, offset),
            (crate::telemetry::LogFormat::Text, 8 * 3600)
        );
    }
}
