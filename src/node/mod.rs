//! A running zhibao node: county point, relay or hub — the same program.
//!
//! An item's way through a node, one module per step:
//!
//! ```text
//!            up ──────────────────────────────────────────────────────────▶
//! operator ─▶ operator ─┐                                  ┌─▶ forward ─▶ upstream
//!   child ─▶ relay ─────┼─▶ custody ─▶ store (fsync) ─────┤     (session, pace, chunks)
//!   (upload: chunks) ───┘   (keep, receipt)                └─▶ inbox ─▶ consumers (hub)
//!            ◀──────────────────────────────────────────────────────── down
//!   child ◀─ relay: receipt ◀─ custody        forward/delivery ◀─ upstream's receipts
//!   child ◀─ push_down ◀──── delivery receipts kept for the child ◀─┘
//! ```
//!
//! - [`start`](start()): the startup sequence and [`RunningNode`], which stops in reverse;
//! - `listeners`: binding and serving the operator socket, the mTLS operator
//!   listener and the relay listener;
//! - `operator`: the local operator API (in: submissions; out: status,
//!   listings, events), with `status` building what an operator sees;
//! - `relay`: children's `Forward` streams and `Deliver` calls (up: items,
//!   chunks, acknowledgements; down: receipts, refusals, chunk requests);
//!   `urgent`: children's connections for urgent items, served apart;
//!   [`boost`]: the runtime raised while an urgent item is under way here;
//! - `upload`: attachments arriving in chunks, until complete and verified,
//!   within each child's quota; abandoned ones reclaimed;
//! - `inflight`: what one child can make this node hold in memory at once;
//! - `push_down`: delivery receipts, decisions and notices going down to a
//!   child until acknowledged;
//! - `custody`: taking an item into the store, and the receipt that says so;
//! - `forward`: one forwarder per route (up: items and chunks; down: the
//!   upstream's answers and pushed-down delivery receipts);
//! - `routes`: which routes an item takes, and how each route is doing;
//! - `deadlines`: the deadline watch — overdue alarms and escalation;
//! - `desk`: the office's decisions on reports from below, signed and
//!   kept for the way down; `who`: who is acting on the operator API;
//! - `followup`: answers the office asked for, watched until they come;
//! - `review`: review before sending (把关) — items held for the director
//!   or deputy, approved, returned, or sent when their time is up;
//! - `office`: solicitations (约稿) published here or come down from above,
//!   answered, and watched to their deadline; `scores`: the hub's figures
//!   (采用记分), bulletins (通报) published, targets;
//! - `consumers`: durable consumers of the inbox; `history`: the decisions
//!   and held notices, streamed to the systems that follow the office;
//! - `inbox`: a hub's consumers reading what arrived;
//! - `consumers`: durable consumers of the inbox — named, acknowledging,
//!   resumed after their acknowledged items, sent again what they do not
//!   acknowledge in time;
//! - `events`: live events for `zhibao watch`, counted in the metrics too;
//! - `scrape`: what a metrics scrape reads of the node (queues, routes);
//! - `audit`: signed checkpoints of the custody log (its records are
//!   written by the store with each change);
//! - `reload`: the CA and CRL kept current, the CRL's freshness watched;
//! - `retention`: pruning delivered items' reports and attachments, and
//!   the final hub's archive files;
//! - `reconfigure`: SIGHUP — the configuration read again, what can change
//!   while running applied (`live` holds such settings), the rest named
//!   as needing a restart;
//! - [`error`]: why a node did not start or a request was refused, and the
//!   one mapping of refusals to gRPC status codes.

pub mod archive;
mod audit;
pub mod boost;
mod consumers;
mod custody;
mod deadlines;
mod desk;
pub mod error;
mod events;
mod followup;
mod forward;
mod history;
mod inbox;
mod inflight;
mod listeners;
mod live;
mod office;
mod operator;
mod push_down;
mod reconfigure;
mod refusals;
mod relay;
mod reload;
mod retention;
mod review;
mod routes;
mod said;
mod scores;
mod scrape;
mod start;
mod status;
mod upload;
mod urgent;
mod who;

pub use archive::read_archive;
pub use error::StartError;
pub use reconfigure::Reconfigured;
pub use start::{RunningNode, start};
// The web desk (`crate::web`) serves the operator API's views and the desk.
pub(crate) use listeners::bind_tcp as bind_web;
pub(crate) use operator::OperatorService;
pub(crate) use who::Actor;
