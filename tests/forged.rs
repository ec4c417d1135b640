//! An upstream that lies on the way down: a "region" (a real certificate of
//! the region, our own test server) takes a county's item and then pushes
//! decisions down its stream — one the hub really signed, one it altered,
//! one it signed itself pretending to hold the item by the hub's receipt,
//! one out of order — and solicitations: one the hub signed, the same with
//! its deadline moved, one the region signed in its own name and one it
//! signed in the hub's. The county keeps only the genuine ones, raises an
//! alarm for each of the others, and acknowledges only what it kept.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::{HUB, Region};
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use zhibao::class::Class;
use zhibao::config::{NodeConfig, Role, UpstreamConfig};
use zhibao::disposition::{self, Decision, Item, Place};
use zhibao::proto::relay_server::{Relay, RelayServer};
use zhibao::proto::{
    DispositionKind, EventKind, ForwardRequest, ForwardResponse, Notice, Priority, ReceiptKind,
    SignedDisposition, SignedNotice, SignedReceipt, SignedReport, Solicitation, forward_request,
    forward_response, notice::Body,
};
use zhibao::receipt::{self, Statement};
use zhibao::trust::{Identity, Keys};

const WAIT: Duration = Duration::from_secs(20);
const LIAR: &str = "region-x";

/// What the lying region pushes down after it has taken the item.
type Pushes = Arc<dyn Fn(&str, &[u8; 32]) -> Vec<SignedDisposition> + Send + Sync>;

struct LyingRegion {
    me: Arc<Identity>,
    pushes: Pushes,
    acks: mpsc::UnboundedSender<(String, String, u32)>,
    notices: Vec<SignedNotice>,
    notice_acks: mpsc::UnboundedSender<(String, u32)>,
}

type Down = Pin<Box<dyn Stream<Item = Result<ForwardResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for LyingRegion {
    type ForwardStream = Down;

    async fn forward(
        self: Arc<Self>,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<Down>, Status> {
        let mut up = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let me = self.me.clone();
        let pushes = self.pushes.clone();
        let acks = self.acks.clone();
        let notice_acks = self.notice_acks.clone();
        for n in &self.notices {
            let _ = tx
                .send(Ok(down(forward_response::Result::Notice(n.clone()))))
                .await;
        }
        tokio::spawn(async move {
            while let Ok(Some(req)) = up.message().await {
                match req.kind {
                    Some(forward_request::Kind::Item(item)) => {
                        let (id, sha) = item_of(&item);
                        let custody = receipt::issue(
                            &me,
                            &Statement {
                                item_id: &id,
                                report_sha256: &sha,
                                stored_unix_ms: zhibao::clock::now_ms(),
                                kind: ReceiptKind::Custody,
                                on_time: true,
                            },
                        );
                        let _ = tx
                            .send(Ok(down(forward_response::Result::Receipt(custody))))
                            .await;
                        for d in pushes(&id, &sha) {
                            let _ = tx
                                .send(Ok(down(forward_response::Result::Disposition(d))))
                                .await;
                        }
                    }
                    Some(forward_request::Kind::Ack(ack)) => {
                        for r in ack.dispositions {
                            let _ = acks.send((r.item_id, r.node, r.seq));
                        }
                        for r in ack.notices {
                            let _ = notice_acks.send((r.id, r.version));
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn deliver(
        self: Arc<Self>,
        _: Request<SignedReport>,
    ) -> Result<Response<SignedReceipt>, Status> {
        Err(Status::unimplemented("this test region only streams"))
    }
}

fn down(result: forward_response::Result) -> ForwardResponse {
    ForwardResponse {
        result: Some(result),
    }
}

fn item_of(item: &SignedReport) -> (String, [u8; 32]) {
    let report = zhibao::proto::Report::decode(item.report.as_slice()).unwrap();
    (report.id, zhibao::digest::sha256(&item.report))
}

fn adopted(text: &str) -> Decision {
    Decision {
        kind: DispositionKind::Adopted,
        text: text.into(),
        answer_by_unix_ms: 0,
        staff: "王芳".into(),
    }
}

fn solicitation(id: &str) -> Notice {
    Notice {
        id: id.into(),
        version: 1,
        staff: "王芳".into(),
        at_unix_ms: zhibao::clock::now_ms(),
        body: Some(Body::Solicitation(Solicitation {
            topic: "汛情".into(),
            deadline_unix_ms: zhibao::clock::now_ms() + 3_600_000,
            priority: Priority::Routine as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A genuine solicitation of the hub and three lies about others.
fn notices(hub: &Identity, liar: &Identity) -> Vec<SignedNotice> {
    let genuine = zhibao::notice::issue(hub, solicitation("SOL-00000000000000a1"));
    // The hub's solicitation with its deadline moved by the region.
    let mut moved = zhibao::notice::issue(hub, solicitation("SOL-00000000000000a2"));
    let mut body = zhibao::notice::peek(&moved).unwrap();
    if let Some(Body::Solicitation(s)) = body.body.as_mut() {
        s.deadline_unix_ms += 86_400_000;
    }
    moved.notice = body.encode_to_vec();
    // The region's own, in its own name: it is no publisher of the county.
    let own = zhibao::notice::issue(liar, solicitation("SOL-00000000000000a3"));
    // The region's own, signed by it but naming the hub as publisher.
    let mut named = solicitation("SOL-00000000000000a4");
    named.publisher = HUB.into();
    let bytes = named.encode_to_vec();
    let mut msg = zhibao::notice::CONTEXT.to_vec();
    msg.extend_from_slice(&bytes);
    let in_hubs_name = SignedNotice {
        signature: liar.sign(&msg),
        signer_cert: liar.cert().to_vec(),
        notice: bytes,
    };
    vec![moved, own, in_hubs_name, genuine]
}

fn delivery_by(hub: &Identity, id: &str, sha: &[u8; 32]) -> SignedReceipt {
    receipt::issue(
        hub,
        &Statement {
            item_id: id,
            report_sha256: sha,
            stored_unix_ms: zhibao::clock::now_ms(),
            kind: ReceiptKind::Delivery,
            on_time: true,
        },
    )
}

#[tokio::test]
async fn a_county_keeps_only_what_the_deciding_hub_really_signed() {
    let region = Region::new(&["county-f", LIAR]);
    let hub = Arc::new(region.identity(HUB));
    let liar = Arc::new(region.identity(LIAR));
    let pushes: Pushes = {
        let (hub, liar) = (hub.clone(), liar.clone());
        Arc::new(move |id: &str, sha: &[u8; 32]| {
            let item = Item {
                id,
                sha256: sha,
                origin: "county-f",
            };
            let first = Place {
                seq: 1,
                previous: None,
            };
            let genuine = disposition::issue(
                &hub,
                item,
                &adopted("《情况专报》第12期"),
                first,
                zhibao::clock::now_ms(),
                delivery_by(&hub, id, sha),
            );
            // The same decision, its text changed on the way.
            let mut altered = genuine.clone();
            let mut body = disposition::peek(&altered).unwrap();
            body.text = "《情况专报》第13期".into();
            altered.disposition = body.encode_to_vec();
            // The region signs one itself, with the hub's receipt as "proof".
            let borrowed = disposition::issue(
                &liar,
                item,
                &adopted("地区采用"),
                first,
                zhibao::clock::now_ms(),
                delivery_by(&hub, id, sha),
            );
            // The hub's real signature, but number 3 with no number 2.
            let gap = disposition::issue(
                &hub,
                item,
                &adopted("跳号"),
                Place {
                    seq: 3,
                    previous: Some(&disposition::digest(&genuine)),
                },
                zhibao::clock::now_ms(),
                delivery_by(&hub, id, sha),
            );
            vec![altered, borrowed, gap, genuine]
        })
    };
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let (notice_acks_tx, mut notice_acks) = mpsc::unbounded_channel();
    let lies = notices(&hub, &liar);
    // The lying region listens with a real certificate of the region.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, k) = zhibao::trust::node_paths(&region.pki(), LIAR);
    let keys = Arc::new(Keys::new(region.identity(LIAR), &c, &k));
    let stop = CancellationToken::new();
    let incoming = zhibao::tls::spawn_acceptor(
        listener,
        keys,
        Arc::new(region.trust()),
        zhibao::tls::ListenLimits {
            max_connections: 16,
            max_connections_per_peer: 4,
            max_handshakes: 4,
            handshake_timeout: Duration::from_secs(5),
        },
        None,
        zhibao::tls::RefusalHook::default(),
        stop.clone(),
    );
    let server = RelayServer::new(LyingRegion {
        me: liar,
        pushes,
        acks: acks_tx,
        notices: lies,
        notice_acks: notice_acks_tx,
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming_shutdown(
                ReceiverStream::new(incoming),
                stop.clone().cancelled_owned(),
            ),
    );

    let mut cfg = NodeConfig::for_node("county-f", &region.pki(), &region.data("county-f"));
    cfg.upstream = vec![UpstreamConfig {
        node_id: LIAR.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }];
    cfg.office.publishers = vec![HUB.into()];
    let county = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&county).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit(Class::BadNews, "桥梁垮塌", b"details".to_vec(), 0)
        .await
        .unwrap();
    // Three alarms, one per lie, and the genuine decision kept.
    let mut alarms = Vec::new();
    let mut alarms_zh = Vec::new();
    let mut notice_alarms = Vec::new();
    let mut kept = false;
    tokio::time::timeout(WAIT, async {
        while alarms.len() < 3 || !kept || notice_alarms.len() < 3 {
            let e = events.message().await.unwrap().unwrap();
            if e.kind == EventKind::Alarm as i32 && e.message.contains("notice") {
                notice_alarms.push(e.message);
                continue;
            }
            if e.item_id != id {
                continue;
            }
            if e.kind == EventKind::Alarm as i32 {
                alarms.push(e.message);
                alarms_zh.push(e.message_zh);
            } else if e.kind == EventKind::Disposed as i32 {
                kept = true;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("alarms {alarms:?}, kept {kept}, notices {notice_alarms:?}"));
    assert!(
        notice_alarms.iter().any(|a| a.contains("not a publisher")),
        "{notice_alarms:?}"
    );
    assert!(
        notice_alarms.iter().any(|a| a.contains("but is signed by")),
        "{notice_alarms:?}"
    );
    assert!(
        alarms.iter().any(|a| a.contains("does not verify")),
        "{alarms:?}"
    );
    assert!(alarms.iter().any(|a| a.contains("#3")), "{alarms:?}");
    // Said to a watcher in Chinese too, the reason in words.
    let failed: Vec<_> = alarms_zh
        .iter()
        .filter(|a| a.contains("处理意见未通过验证："))
        .collect();
    assert!(!failed.is_empty(), "{alarms_zh:?}");
    // Each reason in Chinese words, not the error's English.
    assert!(
        failed
            .iter()
            .all(|a| a.split_once("未通过验证：").is_some_and(
                |(_, why)| !why.is_empty() && !why.chars().any(|c| c.is_ascii_alphabetic())
            )),
        "{failed:?}"
    );
    assert!(
        alarms_zh.iter().any(|a| a.contains("第 3 号处理意见")),
        "{alarms_zh:?}"
    );
    let st = op.status(&id).await.unwrap();
    assert_eq!(st.dispositions.len(), 1, "only the genuine decision");
    let d = &st.dispositions[0];
    assert_eq!(d.body.as_ref().unwrap().text, "《情况专报》第12期");
    assert!(
        d.verification.starts_with("valid: signed by hub"),
        "{}",
        d.verification
    );
    // The hub's delivery receipt came with the decision.
    assert!(st.delivery.is_some());
    // Only the genuine one was acknowledged.
    let ack = tokio::time::timeout(WAIT, acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, (id.clone(), HUB.to_string(), 1));
    assert!(acks.try_recv().is_err());
    // Of the solicitations, only the genuine one is kept and acknowledged.
    let ack = tokio::time::timeout(WAIT, notice_acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, ("SOL-00000000000000a1".to_string(), 1));
    assert!(notice_acks.try_recv().is_err());
    let kept = op
        .notices(zhibao::proto::NoticesRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = kept
        .iter()
        .map(|v| v.body.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids, vec!["SOL-00000000000000a1".to_string()]);
    county.shutdown(WAIT).await;
    stop.cancel();
}
