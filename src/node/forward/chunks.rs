//! Attachment uploads on one session, on the sending side: which chunk goes
//! next.
//!
//! One chunk is on the wire at a time, and the next one always comes from
//! the most urgent item the receiver wants chunks of, so an urgent item
//! waits behind at most one chunk of bulk.

use std::collections::HashMap;

use crate::proto::ChunkNeed;

/// What the receiver wants of one item: (lane, attachment, next chunk).
type Want = (u8, u32, u32);

/// The uploads of one session.
#[derive(Debug, Default)]
pub(crate) struct ChunkSchedule {
    wanted: HashMap<String, Want>,
    /// The item whose chunk is on the wire, if any.
    on_wire: Option<String>,
}

impl ChunkSchedule {
    /// The receiver wants chunk `need.next` of an item of `lane`; returns
    /// whether this is the first it asked of that item on this session.
    pub(crate) fn want(&mut self, need: &ChunkNeed, lane: u8) -> bool {
        if self.on_wire.as_deref() == Some(need.item_id.as_str()) {
            self.on_wire = None;
        }
        self.wanted
            .insert(need.item_id.clone(), (lane, need.attachment, need.next))
            .is_none()
    }

    /// No more chunks of `id`: it left the wire (receipted or refused), or
    /// what the receiver wants of it cannot be sent.
    pub(crate) fn done(&mut self, id: &str) {
        self.wanted.remove(id);
        if self.on_wire.as_deref() == Some(id) {
            self.on_wire = None;
        }
    }

    /// The chunk to send next, if the wire is free: (item, attachment,
    /// index), most urgent lane first. It counts as on the wire from here.
    pub(crate) fn next(&mut self) -> Option<(String, u32, u32)> {
        if self.on_wire.is_some() {
            return None;
        }
        let (id, (_, attachment, index)) = self
            .wanted
            .iter()
            .min_by_key(|(id, (lane, _, _))| (*lane, (*id).clone()))
            .map(|(id, w)| (id.clone(), *w))?;
        self.on_wire = Some(id.clone());
        Some((id, attachment, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(id: &str, next: u32) -> ChunkNeed {
        ChunkNeed {
            item_id: id.into(),
            attachment: 0,
            next,
        }
    }

    #[test]
    fn one_chunk_at_a_time_and_the_most_urgent_first() {
        let mut s = ChunkSchedule::default();
        assert!(s.want(&need("bulk", 0), 2));
        assert_eq!(s.next(), Some(("bulk".into(), 0, 0)));
        assert_eq!(s.next(), None, "one chunk on the wire at a time");
        assert!(s.want(&need("urgent", 0), 0));
        assert!(!s.want(&need("bulk", 1), 2), "the answer frees the wire");
        assert_eq!(s.next(), Some(("urgent".into(), 0, 0)), "urgent first");
        s.done("urgent");
        assert_eq!(s.next(), Some(("bulk".into(), 0, 1)));
    }
}
