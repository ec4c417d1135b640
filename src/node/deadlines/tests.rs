//! Unit tests of the deadline watch on tokio's paused clock: a minute of
//! deadlines in milliseconds, with a real store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::*;
use crate::config::{Role, UpstreamConfig};
use crate::proto::Event;
use crate::store::{Destination, RecordState};

/// Where the virtual clock starts: 2026-11-26 00:00 UTC.
const BASE: i64 = 1_795_651_200_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    routes: Arc<Routes>,
    events: Events,
    clock: Clock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_at(BASE);
    let store = Store::open_with_clock(&dir.path().join("s.redb"), clock).unwrap();
    let route = |id: &str, role| UpstreamConfig {
        node_id: id.into(),
        addr: "h:1".into(),
        role,
    };
    let routes = Arc::new(Routes::new(&[
        route("hub", Role::Primary),
        route("hub-b", Role::Alternate),
    ]));
    Fixture {
        _dir: dir,
        store,
        routes,
        events: Events::new(clock),
        clock,
    }
}

impl Fixture {
    fn watch(&self) -> DeadlineWatch {
        DeadlineWatch::new(
            self.store.clone(),
            self.routes.clone(),
            self.events.clone(),
            self.clock,
        )
    }

    /// Queues an item of `class` on the primary, due `due_in` from now.
    async fn queue(&self, id: &str, class: Class, due_in: Duration) {
        let rec = ItemRecord {
            signed: b"signed".to_vec(),
            lane: u32::from(class.lane()),
            deadline_ms: self.clock.now_ms() + i64::try_from(due_in.as_millis()).unwrap(),
            sha256: vec![7; 32],
            from: "operator".into(),
            ..Default::default()
        };
        let routes = self.routes.initial(class);
        self.store
            .put(id.into(), rec, Destination::Queue(routes))
            .await
            .unwrap();
    }

    async fn record(&self, id: &str) -> ItemRecord {
        self.store.get(id.into()).await.unwrap().unwrap()
    }
}

fn kinds(events: &mut broadcast::Receiver<Event>) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(EventKind::try_from(e.kind).unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn an_item_past_its_deadline_is_marked_overdue_once_and_escalated() {
    let f = fixture();
    let mut events = f.events.subscribe();
    let mut watch = f.watch();
    f.queue("b1", Class::BadNews, Duration::from_secs(600))
        .await;

    watch.pass().await.unwrap();
    assert!(kinds(&mut events).is_empty(), "not due yet");

    tokio::time::advance(Duration::from_secs(600) + Duration::from_millis(1)).await;
    watch.pass().await.unwrap();
    assert_eq!(
        kinds(&mut events),
        [EventKind::Overdue, EventKind::Escalated]
    );
    let rec = f.record("b1").await;
    assert_eq!(rec.overdue_ms, BASE + 600_001);
    assert_eq!(rec.pending_routes, ["hub", "hub-b"]);
    assert_eq!(rec.state(), Some(RecordState::Queued), "never dropped");

    watch.pass().await.unwrap();
    assert!(kinds(&mut events).is_empty(), "overdue once");
    assert_eq!(f.store.overdue_total().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_every_primary_down_items_escalate_before_their_deadline() {
    let f = fixture();
    let mut events = f.events.subscribe();
    let mut watch = f.watch();
    f.queue("r1", Class::Routine, Duration::from_secs(3600))
        .await;
    f.queue("e1", Class::Emergency, Duration::from_secs(60))
        .await;

    watch.pass().await.unwrap();
    assert!(kinds(&mut events).is_empty(), "the primary was never tried");

    f.routes.set_up("hub", false);
    watch.pass().await.unwrap();
    assert_eq!(kinds(&mut events), [EventKind::Escalated]);
    let r1 = f.record("r1").await;
    assert_eq!(r1.pending_routes, ["hub", "hub-b"]);
    assert_eq!(r1.escalated_ms, BASE);
    assert_eq!(r1.overdue_ms, 0, "escalated early, not overdue");
    assert_eq!(
        f.record("e1").await.escalated_ms,
        0,
        "an emergency is on every route already"
    );

    watch.pass().await.unwrap();
    assert!(kinds(&mut events).is_empty(), "escalated once");
}

#[tokio::test(start_paused = true)]
async fn the_watch_wakes_at_the_deadline() {
    let f = fixture();
    let mut events = f.events.subscribe();
    // Queued before the watch runs: with time paused, a watch already
    // napping would let the clock run on while the store writes.
    f.queue("b2", Class::BadNews, Duration::from_secs(90)).await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(f.watch().run(stop.clone()));

    let overdue = loop {
        let e = events.recv().await.unwrap();
        if e.kind == EventKind::Overdue as i32 {
            break e;
        }
    };
    assert_eq!(overdue.item_id, "b2");
    let late = f.clock.now_ms() - (BASE + 90_000);
    assert!(
        (0..=MAX_NAP.as_millis() as i64).contains(&late),
        "noticed {late} ms after the deadline"
    );
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_jump_of_the_system_clock_neither_marks_items_overdue_nor_hides_late_ones() {
    let f = fixture();
    let mut events = f.events.subscribe();
    let mut watch = f.watch();
    f.queue("b1", Class::BadNews, Duration::from_secs(600))
        .await;
    watch.pass().await.unwrap();

    // The system clock is set a day ahead: nothing is overdue for it, one
    // alarm says so, and the item stays queued.
    tokio::time::advance(Duration::from_secs(1)).await;
    watch.clock = Clock::tokio_at(f.clock.now_ms() + 86_400_000);
    watch.pass().await.unwrap();
    assert_eq!(kinds(&mut events), [EventKind::Alarm]);
    assert_eq!(f.record("b1").await.overdue_ms, 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    watch.pass().await.unwrap();
    assert!(kinds(&mut events).is_empty(), "one alarm per jump");
    assert_eq!(f.record("b1").await.overdue_ms, 0);

    // Then a day back, behind the truth: the item is overdue when its
    // deadline really passes, not a day later.
    watch.clock = Clock::tokio_at(f.clock.now_ms() - 86_400_000);
    tokio::time::advance(Duration::from_secs(540)).await;
    watch.pass().await.unwrap();
    assert_eq!(
        kinds(&mut events),
        [EventKind::Alarm, EventKind::Overdue, EventKind::Escalated]
    );
    let rec = f.record("b1").await;
    assert_eq!(
        rec.overdue_ms,
        BASE + 601_000,
        "late is late, whatever the wall clock says"
    );
    assert_eq!(rec.state(), Some(RecordState::Queued), "never dropped");
}
