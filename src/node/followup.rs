//! The follow-up watch: an answer the office asked for is not forgotten.
//!
//! When an office returns an item for more information, the decision
//! carries the time the answer is due; every node that keeps the decision
//! (the deciding hub, the relays, the county) records it. This watch sleeps
//! until the earliest such time; if no supplement has answered by then, it
//! marks the item (once, in the store, so a restart does not repeat it) and
//! says so: at the county that wrote the report, a reminder to its
//! operators; at every node above, an alarm for the office. A supplement
//! arriving later is still taken and shown with the item.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::events::Events;
use super::said::Said;
use crate::class::Class;
use crate::clock::Clock;
use crate::proto::EventKind;
use crate::store::{self, FROM_OPERATOR, Store};

/// Answers handled per pass; the next pass follows at once if there are more.
const BATCH: usize = 256;
/// Longest sleep, so a jump of the clock is caught up with soon.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Watches the answers awaited from origins.
#[derive(Debug)]
pub(crate) struct FollowUpWatch {
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) clock: Clock,
}

impl FollowUpWatch {
    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut changes = self.store.answers_watch();
        loop {
            changes.borrow_and_update();
            let more = match self.pass().await {
                Ok(more) => more,
                Err(e) => {
                    error!(error = %e, "follow-up watch cannot read the store; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            let nap = match self.store.next_answer_due().await {
                Ok(Some(at)) => {
                    let wait = at.saturating_sub(self.clock.now_ms());
                    Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_NAP)
                }
                _ => MAX_NAP,
            };
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                r = changes.changed() => if r.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Marks every answer now past due; returns whether the batch was full.
    async fn pass(&self) -> Result<bool, store::Error> {
        let now = self.clock.now_ms();
        let due = self.store.answers_due(now, BATCH).await?;
        let full = due.len() == BATCH;
        for (due_ms, id) in due {
            if !self.store.answer_overdue(id.clone(), due_ms).await? {
                continue;
            }
            let Some(rec) = self.store.record(id.clone()).await? else {
                continue;
            };
            let class = Class::from_lane(rec.lane());
            let origin = rec.brief().origin;
            let late = now.saturating_sub(due_ms);
            if rec.from == FROM_OPERATOR {
                warn!(reminder = "answer-due", %id, late_ms = late, "the office's question on this report is unanswered past its deadline");
                self.events.emit(
                    EventKind::Reminder,
                    &id,
                    class,
                    "",
                    Said::both(
                        format!(
                            "the office asked for more information by its deadline and has no answer yet: answer with `zhibao submit --supplements {id}`"
                        ),
                        format!(
                            "信息科要求补充的情况已到期，尚未补报：用 `zhibao submit --supplements {id}` 补报"
                        ),
                    ),
                );
            } else {
                error!(alarm = "answer-overdue", %id, %origin, late_ms = late, "ALARM: the answer asked of the county is overdue");
                self.events.alarm(
                    &id,
                    "",
                    Said::both(
                        format!(
                            "{origin} has not answered the question on this report by its deadline"
                        ),
                        format!("{origin} 未在时限内补报本条信息所问情况"),
                    ),
                );
            }
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    //! The follow-up rules on tokio's paused clock, with a real store.

    use tokio::sync::broadcast;

    use super::*;
    use crate::proto::{DispositionKind, Event, LinkKind};
    use crate::store::{Decision, Destination, ItemRecord};

    const BASE: i64 = 1_795_651_200_000;
    const HOUR: i64 = 3_600_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        events: Events,
        clock: Clock,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::tokio_at(BASE);
        let store = Store::open_with_clock(&dir.path().join("s.redb"), clock).unwrap();
        Fixture {
            _dir: dir,
            store,
            events: Events::new(clock),
            clock,
        }
    }

    impl Fixture {
        async fn deliver(&self, id: &str, from: &str, link: Option<&str>) {
            let rec = ItemRecord {
                signed: b"signed".to_vec(),
                sha256: vec![7; 32],
                from: from.into(),
                link: link.map_or(0, |_| LinkKind::Supplements as i32),
                links_to: link.unwrap_or_default().into(),
                ..Default::default()
            };
            self.store
                .put(id.into(), rec, Destination::Inbox)
                .await
                .unwrap();
        }

        /// The office returns `id`, the answer due `due_in` ms from now.
        async fn ret(&self, id: &str, due_in: i64) {
            let decision = Decision {
                signed: format!("decision on {id}").into_bytes(),
                node: "hub".into(),
                seq: 1,
                previous: Vec::new(),
                kind: DispositionKind::Returned as i32,
                at_ms: self.clock.now_ms(),
                answer_by_ms: self.clock.now_ms() + due_in,
                delivery: None,
                text: String::new(),
            };
            self.store.decide(id.into(), decision).await.unwrap();
        }

        fn start(&self) -> CancellationToken {
            let stop = CancellationToken::new();
            let watch = FollowUpWatch {
                store: self.store.clone(),
                events: self.events.clone(),
                clock: self.clock,
            };
            tokio::spawn(watch.run(stop.clone()));
            stop
        }
    }

    async fn next(events: &mut broadcast::Receiver<Event>) -> Event {
        events.recv().await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_question_alarms_above_and_reminds_the_origin() {
        let f = fixture();
        f.deliver("from-county", "county-a", None).await;
        f.deliver("written-here", FROM_OPERATOR, None).await;
        f.ret("from-county", HOUR).await;
        f.ret("written-here", 2 * HOUR).await;
        let mut events = f.events.subscribe();
        let stop = f.start();
        let first = next(&mut events).await;
        assert_eq!(first.kind, EventKind::Alarm as i32);
        assert_eq!(first.item_id, "from-county");
        assert!(f.clock.now_ms() >= BASE + HOUR, "not before it is due");
        let second = next(&mut events).await;
        assert_eq!(second.kind, EventKind::Reminder as i32);
        assert_eq!(second.item_id, "written-here");
        assert!(f.clock.now_ms() >= BASE + 2 * HOUR);
        let rec = f.store.get("from-county".into()).await.unwrap().unwrap();
        assert!(rec.answer_overdue_ms >= BASE + HOUR);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_supplement_in_time_settles_the_question() {
        let f = fixture();
        f.deliver("asked", "county-a", None).await;
        f.ret("asked", HOUR).await;
        f.deliver("answer", "county-a", Some("asked")).await;
        let rec = f.store.get("asked".into()).await.unwrap().unwrap();
        assert_eq!(rec.answer_by_ms, 0);
        assert_eq!(rec.supplements, vec!["answer".to_string()]);
        // Another question on another item, to see the watch is awake.
        f.deliver("other", "county-a", None).await;
        f.ret("other", 2 * HOUR).await;
        let mut events = f.events.subscribe();
        let stop = f.start();
        let e = next(&mut events).await;
        assert_eq!(e.item_id, "other", "the answered question raised nothing");
        let rec = f.store.get("asked".into()).await.unwrap().unwrap();
        assert_eq!(rec.answer_overdue_ms, 0);
        stop.cancel();
    }
}
