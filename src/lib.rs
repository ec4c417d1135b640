//! zhibao (直报, "direct report"): a secure store-and-forward relay for
//! urgent reports from county direct-reporting points to a regional hub.
//!
//! # Layout
//! Ground floor — rules and plain functions, no network:
//! - [`clock`], [`digest`]: Unix milliseconds from an injectable clock;
//!   SHA-256 and hex;
//! - [`class`], [`config`]: the three priority classes and their deadlines;
//!   a node's configuration, checked before anything binds;
//! - [`trust`]: who is who — the node-id rule, the PKI directory layout,
//!   this node's identity, the region CA and CRL;
//! - [`envelope`]: signed reports — sealed at the origin, opened (verified)
//!   anywhere, with attachment references and the relays' hop chain;
//! - [`receipt`]: signed receipts — issued by a receiver, verified by
//!   whoever stores them;
//! - [`disposition`]: signed decisions of an office on an item (adopted,
//!   returned, closed…), carried down to the county that wrote it;
//! - [`notice`]: signed notices of an office to every node below it —
//!   solicitations (约稿) and bulletins (通报);
//! - [`held`]: signed notices of items held past their deadline, carried
//!   up to the final hub ahead of the items;
//! - [`store`]: the durable custody store — records, priority queues per
//!   route, deadlines, the inbox, attachments in chunks;
//! - [`proto`]: the wire contract and its strict codec;
//! - [`audit`]: the custody log — hash-chained records of every custody
//!   change, signed checkpoints, verification;
//! - [`score`]: the office's adoption scores (采用记分) — per-county
//!   statistics, points under versioned rules, yearly targets, the
//!   monthly bulletin — computed from facts the caller gathers.
//!
//! Transport and the running node:
//! - [`tls`]: mutual TLS 1.3 — configurations, the accept loop with its
//!   budgets, connecting upstream;
//! - [`node`]: a running node — operator API, relay service, custody,
//!   attachment uploads, forwarders, the deadline watch, the inbox;
//! - [`client`]: operator and inbox clients (the CLI's and the tests').
//!
//! Tools: [`pki`] makes the region's certificates (`zhibao certs`);
//! [`telemetry`] sets up logs (text in local time, or JSON lines);
//! [`metrics`] counts what a node does, for Prometheus; [`secret`]
//! compares and reads the shared secrets people and scrapers present. The `zhibao`
//! binary (`src/main.rs`, `src/cli/`: commands, output for people,
//! `demo`, `bench`) is built on these; the library does not depend on it.
//!
//! # How an item flows
//! ```text
//! operator ──Submit──▶ node::operator ─▶ envelope::seal ─▶ node::custody ─▶ store (fsync)
//!                                                                            │
//!                 node::forward (route's session, schedule order) ◀──────────┘
//!                         │ Relay.Forward (mutual TLS)
//!                         ▼
//!   hub: node::relay ─▶ envelope::open (CA, CRL, signature, origin, hops)
//!        ─▶ node::custody ─▶ store (fsync) ─▶ receipt::issue ─▶ back down the stream
//!        ─▶ a relay countersigns a hop and forwards further up (node::forward);
//!           the final hub keeps it in its inbox (node::inbox ─▶ consumers)
//!        ◀─ the final hub's delivery receipt travels back down (node::push_down)
//! ```
//!
//! The deadline watch (`node::deadlines`) marks items with no receipt by
//! their class deadline overdue and escalates them to alternate and
//! skip-level routes.

pub mod audit;
pub mod class;
pub mod client;
pub mod clock;
pub mod config;
pub mod digest;
pub mod disposition;
pub mod envelope;
pub mod held;
pub mod metrics;
pub mod node;
pub mod notice;
pub mod pki;
pub mod proto;
pub mod receipt;
pub mod score;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod trust;
pub mod verdict;
pub mod web;
