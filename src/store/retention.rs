//! Retention: finding and pruning items whose bodies may go, and what the
//! store holds, table by table.
//!
//! Pruning keeps what proves custody — the item's digest, every receipt,
//! every decision, the custody log — and drops the report's bytes and its
//! attachments' chunks, which are most of a store's size. The rule
//! ([`Retention`]) is checked when the candidates are found and again in
//! the write that prunes them, so an item that changed in between (a
//! question came back on it) is left alone.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};

use super::record::{ItemRecord, RecordState, Retention};
use super::tables::{CHUNKS, ITEMS};
use super::txn::Txn;
use super::writer::Write;
use super::{Error, Sparse, Store, decode};

/// Items read per call of [`Store::prunable`]: a pass over a large store is
/// many short reads, not one long one.
const SCAN: usize = 2_000;

/// One table's size, as redb counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSize {
    /// The table's name (see [`super::tables`]).
    pub name: String,
    /// Rows.
    pub entries: u64,
    /// Bytes of keys and values.
    pub stored_bytes: u64,
    /// Bytes of the B-tree's own pages and fragmentation.
    pub overhead_bytes: u64,
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Every table, largest first.
    pub tables: Vec<TableSize>,
    /// Items by state: (state name, count).
    pub items_by_state: Vec<(String, u64)>,
    /// Items whose body and attachments were pruned.
    pub pruned_items: u64,
    /// Bytes those pruned items no longer take.
    pub pruned_bytes: u64,
    /// Bytes of reports still held (the signed bytes).
    pub report_bytes: u64,
}

/// What a scan for prunable items found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// Items the rule allows pruning now.
    pub ids: Vec<String>,
    /// Where the next call goes on from; `None` once the table is read.
    pub next: Option<String>,
}

struct Prune {
    ids: Vec<String>,
    rule: Retention,
    why: String,
}

impl Write for Prune {
    type Out = Vec<(String, u64)>;
    // Housekeeping waits behind everything else.
    fn lane(&self) -> u8 {
        2
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Self::Out, Error> {
        let mut out = Vec::new();
        for id in &self.ids {
            if let Some(bytes) = txn.prune(id, &self.rule, &self.why)? {
                out.push((id.clone(), bytes));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Items `rule` allows pruning at `now_ms`, reading at most a few
    /// thousand records from the item after `after` (from the start if
    /// empty). The reports of the others that lie in one of `sparse`'s
    /// segments are noted in it, for [`Store::compact`].
    pub async fn prunable(
        &self,
        rule: Retention,
        now_ms: i64,
        after: String,
        sparse: &mut Sparse,
    ) -> Result<Candidates, Error> {
        let wanted = sparse.wanted();
        let (candidates, kept) = self
            .read(move |db| {
                let txn = db.begin_read()?;
                let items = txn.open_table(ITEMS)?;
                let range = if after.is_empty() {
                    items.range::<&str>(..)?
                } else {
                    items.range::<&str>((
                        std::ops::Bound::Excluded(after.as_str()),
                        std::ops::Bound::Unbounded,
                    ))?
                };
                let mut out = Candidates::default();
                let mut kept = Vec::new();
                let mut read = 0;
                for row in range {
                    let (k, v) = row?;
                    let id = k.value();
                    let rec = decode(v.value())?;
                    if rule.allows(&rec, now_ms) {
                        out.ids.push(id.to_string());
                    } else if let Some(at) = rec.body
                        && wanted.binary_search(&at.segment).is_ok()
                    {
                        kept.push((id.to_string(), at));
                    }
                    read += 1;
                    if read == SCAN {
                        out.next = Some(id.to_string());
                        break;
                    }
                }
                Ok((out, kept))
            })
            .await?;
        for (id, at) in kept {
            sparse.note(id, at);
        }
        Ok(candidates)
    }

    /// Prunes `ids` (those `rule` still allows), recording `why` in the
    /// custody log; answers each pruned item with the bytes it freed.
    pub async fn prune(
        &self,
        ids: Vec<String>,
        rule: Retention,
        why: String,
    ) -> Result<Vec<(String, u64)>, Error> {
        self.write(Prune { ids, rule, why }).await
    }

    /// Every attachment of `id` as stored, each one's chunks joined, in
    /// order: what the hub's archive keeps of them.
    pub async fn attachments_of(&self, id: String) -> Result<Vec<Vec<u8>>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(CHUNKS)?;
            let mut out: Vec<Vec<u8>> = Vec::new();
            for row in chunks.range((id.as_str(), 0, 0)..=(id.as_str(), u32::MAX, u32::MAX))? {
                let (k, v) = row?;
                let a = k.value().1 as usize;
                if out.len() <= a {
                    out.resize_with(a + 1, Vec::new);
                }
                out[a].extend_from_slice(v.value());
            }
            Ok(out)
        })
        .await
    }

    /// Every table's size and the items by state. Reads every item record:
    /// a command for a person, not for a watch.
    pub async fn stats(&self) -> Result<StoreStats, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let mut stats = StoreStats::default();
            for handle in txn.list_tables()? {
                let table = txn.open_untyped_table(handle.clone())?;
                let s = table.stats()?;
                stats.tables.push(TableSize {
                    name: handle.name().to_string(),
                    entries: table.len()?,
                    stored_bytes: s.stored_bytes(),
                    overhead_bytes: s.metadata_bytes() + s.fragmented_bytes(),
                });
            }
            stats.tables.sort_by(|a, b| {
                b.stored_bytes
                    .cmp(&a.stored_bytes)
                    .then(a.name.cmp(&b.name))
            });
            let mut by_state = std::collections::BTreeMap::<&'static str, u64>::new();
            let items = txn.open_table(ITEMS)?;
            for row in items.iter()? {
                let (_, v) = row?;
                let rec: ItemRecord = decode(v.value())?;
                *by_state.entry(state_name(&rec)).or_default() += 1;
                if rec.is_pruned() {
                    stats.pruned_items += 1;
                    stats.pruned_bytes += rec.pruned_bytes;
                } else {
                    stats.report_bytes +=
                        rec.signed.len() as u64 + rec.body.map_or(0, |at| u64::from(at.len));
                }
            }
            stats.items_by_state = by_state
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            Ok(stats)
        })
        .await
    }
}

/// A record's state as `zhibao store stats` names it.
fn state_name(rec: &ItemRecord) -> &'static str {
    match rec.state() {
        Some(RecordState::Queued) => "queued",
        Some(RecordState::Receipted) if rec.delivery_known() => "delivered upstream",
        Some(RecordState::Receipted) => "receipted",
        Some(RecordState::Refused) => "refused",
        Some(RecordState::Delivered) => "in the inbox",
        Some(RecordState::Withdrawn) => "withdrawn",
        Some(RecordState::Superseded) => "superseded",
        None => "unknown",
    }
}
