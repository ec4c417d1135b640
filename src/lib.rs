//! zhibao (直报, "direct report"): a secure store-and-forward relay for
//! urgent reports from county direct-reporting points to a regional hub.
//!
//! # Layout
//! - [`pki`]: the region CA, node certificates and CRL on disk (`zhibao certs`);
//! - [`identity`]: our key and certificate; the CA and CRL we trust;
//! - [`tls`]: mutual TLS 1.3 listeners and connections, peer identity;
//! - [`envelope`]: signed reports (seal at the origin, open anywhere);
//! - [`receipt`]: signed receipts;
//! - [`store`]: the durable custody store, priority lanes, the inbox;
//! - [`node`]: a running node — operator API, relay service (with chunked
//!   attachments and delivery receipts pushed down), one forwarder per
//!   route, the deadline watch, the inbox;
//! - [`client`]: operator and inbox clients;
//! - [`config`], [`class`]: configuration and priority classes;
//! - [`demo`]: a whole small region on loopback;
//! - [`bench`](mod@bench): throughput and latency on loopback;
//! - [`cli_fmt`], [`telemetry`]: output for people, logs.
//!
//! # How an item flows
//! ```text
//! operator ──Submit──▶ node: seal (sign) ─▶ store (fsync) ─▶ forwarder
//!                                                              │ Relay.Forward (mTLS)
//!                                                              ▼
//!                       hub: envelope::open (CA, CRL, signature, origin)
//!                            ─▶ store (fsync) ─▶ signed receipt ─▶ back to the node
//!                            ─▶ a relay countersigns a hop and forwards further up;
//!                               a hub keeps it in its inbox ─▶ consumers
//!                            ◀─ the hub's delivery receipt travels back down
//! ```
//!
//! The deadline watch marks items with no receipt by their class deadline
//! overdue and escalates them to alternate and skip-level routes.

pub mod class;
pub mod client;
pub mod clock;
pub mod config;
pub mod digest;
pub mod envelope;
pub mod node;
pub mod pki;
pub mod proto;
pub mod receipt;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod trust;
