//! Reads for the office's work: the solicitations and bulletins kept here
//! and what each child still lacks of them, the answers to each
//! solicitation, the fact tables the statistics count, and targets.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};

use super::record::{DecisionFact, Facts, ItemFact};
use super::tables::{
    DECISION_FACTS, ITEM_FACTS, NOTICE_ACKS, NOTICE_FIRED, NOTICES, SOL_ANSWERS, TARGETS,
};
use super::{Error, Store};

impl Store {
    /// The newest version of every notice kept here whose id starts with
    /// `prefix` (`SOL-`, `BUL-`, or empty for all): (id, version, encoded
    /// `SignedNotice`).
    pub async fn notices(
        &self,
        prefix: &'static str,
    ) -> Result<Vec<(String, u32, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let notices = txn.open_table(NOTICES)?;
            let mut newest: Vec<(String, u32, Vec<u8>)> = Vec::new();
            for row in notices.range((prefix, 0)..)? {
                let (k, v) = row?;
                let (id, version) = k.value();
                if !id.starts_with(prefix) {
                    break;
                }
                match newest.last_mut() {
                    Some(last) if last.0 == id => {
                        last.1 = version;
                        last.2 = v.value().to_vec();
                    }
                    _ => newest.push((id.to_string(), version, v.value().to_vec())),
                }
            }
            Ok(newest)
        })
        .await
    }

    /// The newest version of notice `id`, if kept: (version, encoded).
    pub async fn notice(&self, id: String) -> Result<Option<(u32, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let notices = txn.open_table(NOTICES)?;
            let last = notices
                .range((id.as_str(), 0)..=(id.as_str(), u32::MAX))?
                .next_back();
            Ok(match last {
                Some(row) => {
                    let (k, v) = row?;
                    Some((k.value().1, v.value().to_vec()))
                }
                None => None,
            })
        })
        .await
    }

    /// The notice versions `child` has not acknowledged yet, oldest
    /// version first per notice (a child takes them only in order): (id,
    /// version, encoded), at most `limit`.
    pub async fn notices_for(
        &self,
        child: String,
        limit: usize,
    ) -> Result<Vec<(String, u32, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let notices = txn.open_table(NOTICES)?;
            let acks = txn.open_table(NOTICE_ACKS)?;
            let mut has: HashMap<String, u32> = HashMap::new();
            for row in acks.range((child.as_str(), "")..)? {
                let (k, v) = row?;
                let (c, id) = k.value();
                if c != child {
                    break;
                }
                has.insert(id.to_string(), v.value());
            }
            let mut out = Vec::new();
            for row in notices.iter()? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = row?;
                let (id, version) = k.value();
                if version > has.get(id).copied().unwrap_or(0) {
                    out.push((id.to_string(), version, v.value().to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Whether a solicitation version's deadline was dealt with already.
    pub async fn notice_fired(&self, id: String, version: u32) -> Result<bool, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let fired = txn.open_table(NOTICE_FIRED)?;
            Ok(fired.get((id.as_str(), version))?.is_some())
        })
        .await
    }

    /// The reports answering solicitation `id` stored here: (origin, item
    /// id, stored ms), by origin.
    pub async fn answers_to(&self, id: String) -> Result<Vec<(String, String, i64)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let answers = txn.open_table(SOL_ANSWERS)?;
            let mut out = Vec::new();
            for row in answers.range((id.as_str(), "", "")..)? {
                let (k, v) = row?;
                let (sol, origin, item) = k.value();
                if sol != id {
                    break;
                }
                out.push((origin.to_string(), item.to_string(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    /// The facts the statistics count: items created in `[from_ms,
    /// until_ms)`, decisions made in it, and the items those decisions
    /// are about even when created earlier.
    pub async fn facts(&self, from_ms: i64, until_ms: i64) -> Result<Facts, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEM_FACTS)?;
            let decisions = txn.open_table(DECISION_FACTS)?;
            let mut facts = Facts::default();
            let item_fact = |created_ms: i64, id: &str, row: super::tables::ItemFactRow<'_>| {
                let (origin, lane, title, arrived_ms, deadline_ms, link, answers) = row;
                ItemFact {
                    id: id.to_string(),
                    origin: origin.to_string(),
                    lane,
                    title: title.to_string(),
                    created_ms,
                    arrived_ms,
                    deadline_ms,
                    link,
                    answers: answers.to_string(),
                }
            };
            for row in items.range((from_ms, "")..(until_ms, ""))? {
                let (k, v) = row?;
                let (created, id) = k.value();
                facts.items.push(item_fact(created, id, v.value()));
            }
            for row in decisions.range((from_ms, "", "", 0)..(until_ms, "", "", 0))? {
                let (k, v) = row?;
                let (at_ms, id, node, seq) = k.value();
                let (kind, text, item_created_ms) = v.value();
                if !(from_ms..until_ms).contains(&item_created_ms)
                    && let Some(row) = items.get((item_created_ms, id))?
                {
                    facts
                        .items
                        .push(item_fact(item_created_ms, id, row.value()));
                }
                facts.decisions.push(DecisionFact {
                    item_id: id.to_string(),
                    node: node.to_string(),
                    seq,
                    kind,
                    text: text.to_string(),
                    at_ms,
                    item_created_ms,
                });
            }
            Ok(facts)
        })
        .await
    }

    /// Every origin of an item in the inbox (the counties seen sending).
    pub async fn origins(&self) -> Result<std::collections::BTreeSet<String>, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEM_FACTS)?;
            let mut out = std::collections::BTreeSet::new();
            for row in items.iter()? {
                let (_, v) = row?;
                let origin = v.value().0;
                if !out.contains(origin) {
                    out.insert(origin.to_string());
                }
            }
            Ok(out)
        })
        .await
    }

    /// Targets set by command: (county, year, points, adopted).
    pub async fn targets(&self) -> Result<Vec<(String, i32, i64, i64)>, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let targets = txn.open_table(TARGETS)?;
            targets
                .iter()?
                .map(|row| {
                    let (k, v) = row?;
                    let (county, year) = k.value();
                    let (points, adopted) = v.value();
                    Ok((county.to_string(), year, points, adopted))
                })
                .collect()
        })
        .await
    }
}
