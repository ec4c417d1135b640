//! Items held for review before sending (把关), in the same store and under
//! the same durability contract as everything else: a held item is on disk
//! (fsync) before its author is told its id.
//!
//! An item awaiting review is not signed yet, so it is not in `items`: it
//! waits in `reviews` as the operator wrote it ([`ReviewRecord`]). When a
//! director or deputy approves it, or its time runs out, the node seals it
//! and [`Store::send_reviewed`] takes it out of `reviews` and into `items`
//! in one transaction. An emergency sent at once waits for its sign-off in
//! the same table (`sign_off`), under its own id.

use redb::{ReadableDatabase, ReadableTable};

use super::record::{Destination, ItemRecord, PutOutcome};
use super::tables::{REVIEWS, REVIEWS_RETURNED};
use super::txn::Txn;
use super::writer::Write;
use super::{Error, Store};
use crate::proto::AttachmentRef;

/// Review records the watch and `review list` read at most.
const MAX_LISTED: usize = 10_000;

/// An item held for review, or an emergency awaiting its sign-off.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReviewRecord {
    /// `Priority` of the report.
    #[prost(int32, tag = "1")]
    pub priority: i32,
    /// Its title (for a sign-off: the emergency's).
    #[prost(string, tag = "2")]
    pub title: String,
    /// Its text (empty for a sign-off).
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
    /// When it was submitted, Unix ms: the report's creation time, from
    /// which its class deadline counts.
    #[prost(int64, tag = "4")]
    pub created_ms: i64,
    /// Its receipt deadline, Unix ms, as stamped into the report.
    #[prost(int64, tag = "5")]
    pub deadline_ms: i64,
    /// Its attachments, already stored in chunks under its id.
    #[prost(message, repeated, tag = "6")]
    pub attachments: Vec<AttachmentRef>,
    /// Who wrote it up.
    #[prost(string, tag = "7")]
    pub author: String,
    /// `LinkKind` of a follow-up held for review (0 = none).
    #[prost(int32, tag = "8")]
    pub link: i32,
    /// The report it follows up.
    #[prost(string, tag = "9")]
    pub links_to: String,
    /// An emergency that left at once: what awaits is its sign-off report.
    #[prost(bool, tag = "10")]
    pub sign_off: bool,
    /// When it was offered to the deputy (0 = not yet), Unix ms.
    #[prost(int64, tag = "11")]
    pub offered_ms: i64,
    /// When the alarm for an unreviewed item was raised (0 = not yet).
    #[prost(int64, tag = "12")]
    pub alarmed_ms: i64,
    /// Returned: by whom.
    #[prost(string, tag = "13")]
    pub returned_by: String,
    /// Returned: their role.
    #[prost(string, tag = "14")]
    pub returned_role: String,
    /// Returned: the reviewer's note to the author.
    #[prost(string, tag = "15")]
    pub note: String,
    /// Returned: when, Unix ms (0 = still awaiting review).
    #[prost(int64, tag = "16")]
    pub returned_ms: i64,
}

// === writes ===

struct Hold {
    id: String,
    rec: Vec<u8>,
}

impl Write for Hold {
    type Out = bool;
    fn grows(&self) -> bool {
        true
    }
    fn bytes(&self) -> usize {
        self.rec.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        txn.hold_review(&self.id, &self.rec)
    }
}

struct Update {
    id: String,
    rec: Vec<u8>,
    returned: bool,
}

impl Write for Update {
    type Out = bool;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        if self.returned {
            txn.return_review(&self.id, &self.rec)
        } else {
            txn.update_review(&self.id, &self.rec)
        }
    }
}

struct SendReviewed {
    review_id: String,
    id: String,
    record: ItemRecord,
    dest: Destination,
    may_hold_back: bool,
}

impl Write for SendReviewed {
    type Out = Option<PutOutcome>;
    fn bytes(&self) -> usize {
        self.record.signed.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Option<PutOutcome>, Error> {
        txn.send_reviewed(
            &self.review_id,
            &self.id,
            &self.record,
            &self.dest,
            self.may_hold_back,
        )
    }
}

impl Store {
    /// Keeps `rec` awaiting review under `id`, durably; false if the id is
    /// taken.
    pub async fn hold_for_review(&self, id: String, rec: &ReviewRecord) -> Result<bool, Error> {
        let rec = prost::Message::encode_to_vec(rec);
        self.write(Hold { id, rec }).await
    }

    /// Updates the record of an item still awaiting review (the marks of
    /// the review watch); false if it no longer awaits review.
    pub async fn update_review(&self, id: String, rec: &ReviewRecord) -> Result<bool, Error> {
        let rec = prost::Message::encode_to_vec(rec);
        self.write(Update {
            id,
            rec,
            returned: false,
        })
        .await
    }

    /// Returns an item awaiting review to its author (`rec` says by whom
    /// and why): kept, never sent; false if it no longer awaits review.
    pub async fn return_review(&self, id: String, rec: &ReviewRecord) -> Result<bool, Error> {
        let rec = prost::Message::encode_to_vec(rec);
        self.write(Update {
            id,
            rec,
            returned: true,
        })
        .await
    }

    /// Ends the review of `review_id` and stores the sealed item `id` (see
    /// [`Store::put_with`]) in one transaction; `None` if it no longer
    /// awaits review (someone else acted first).
    pub async fn send_reviewed(
        &self,
        review_id: String,
        id: String,
        record: ItemRecord,
        dest: Destination,
        may_hold_back: bool,
    ) -> Result<Option<PutOutcome>, Error> {
        self.write(SendReviewed {
            review_id,
            id,
            record,
            dest,
            may_hold_back,
        })
        .await
    }

    // === reads ===

    /// The review record of `id`, awaiting review or returned.
    pub async fn review(&self, id: String) -> Result<Option<ReviewRecord>, Error> {
        self.lookup(move |db| {
            let txn = db.begin_read()?;
            for table in [REVIEWS, REVIEWS_RETURNED] {
                if let Some(v) = txn.open_table(table)?.get(id.as_str())? {
                    return Ok(Some(decode(v.value())?));
                }
            }
            Ok(None)
        })
    }

    /// Every item awaiting review (or sign-off), oldest id first.
    pub async fn reviews_awaiting(&self) -> Result<Vec<(String, ReviewRecord)>, Error> {
        self.read_reviews(false).await
    }

    /// Items returned by review, oldest id first.
    pub async fn reviews_returned(&self) -> Result<Vec<(String, ReviewRecord)>, Error> {
        self.read_reviews(true).await
    }

    async fn read_reviews(&self, returned: bool) -> Result<Vec<(String, ReviewRecord)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(if returned { REVIEWS_RETURNED } else { REVIEWS })?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), decode(v.value())?));
                if out.len() >= MAX_LISTED {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }
}

fn decode(bytes: &[u8]) -> Result<ReviewRecord, Error> {
    prost::Message::decode(bytes).map_err(Error::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn held(title: &str) -> ReviewRecord {
        ReviewRecord {
            priority: 2,
            title: title.into(),
            created_ms: 1,
            deadline_ms: 2,
            author: "王芳".into(),
            ..Default::default()
        }
    }

    fn item(id: &str) -> ItemRecord {
        ItemRecord {
            signed: id.as_bytes().to_vec(),
            sha256: vec![1; 32],
            from: crate::store::FROM_OPERATOR.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_held_item_is_sent_once_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open_with_clock(&path, Clock::System).unwrap();
        assert!(
            store
                .hold_for_review("a".into(), &held("甲"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .hold_for_review("a".into(), &held("甲"))
                .await
                .unwrap()
        );
        assert!(
            store
                .hold_for_review("b".into(), &held("乙"))
                .await
                .unwrap()
        );
        store.close().await;

        let store = Store::open_with_clock(&path, Clock::System).unwrap();
        let awaiting = store.reviews_awaiting().await.unwrap();
        assert_eq!(awaiting.len(), 2, "kept across a restart");
        let dest = Destination::Queue(vec!["hub".into()]);
        let sent = store
            .send_reviewed("a".into(), "a".into(), item("a"), dest.clone(), false)
            .await
            .unwrap();
        assert!(matches!(sent, Some(PutOutcome::Stored(_))));
        let again = store
            .send_reviewed("a".into(), "a".into(), item("a"), dest, false)
            .await
            .unwrap();
        assert!(again.is_none(), "the second sender finds it gone");
        assert!(store.get("a".into()).await.unwrap().is_some());
        let mut back = held("乙");
        back.returned_ms = 5;
        back.note = "数字不对".into();
        assert!(store.return_review("b".into(), &back).await.unwrap());
        assert!(!store.update_review("b".into(), &back).await.unwrap());
        assert!(store.reviews_awaiting().await.unwrap().is_empty());
        let returned = store.review("b".into()).await.unwrap().unwrap();
        assert_eq!(returned.note, "数字不对");
        assert_eq!(store.reviews_returned().await.unwrap().len(), 1);
    }
}
