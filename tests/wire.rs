//! The wire contract as a client that is not ours sees it: raw protobuf bytes
//! sent with tonic's generic client, and the codes and answers that come back.

mod common;

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use common::{HUB, Region};
use http::uri::PathAndQuery;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use zhibao::envelope;
use zhibao::proto::{
    Chunk, ForwardRequest, ForwardResponse, Report, SignedReceipt, SignedReport, forward_request,
    forward_response,
};

const PATIENCE: Duration = Duration::from_secs(10);
const FORWARD: &str = "/zhibao.v1.Relay/Forward";
const DELIVER: &str = "/zhibao.v1.Relay/Deliver";

/// Sends bytes exactly as given; decodes answers as `D` with plain prost.
struct RawCodec<D>(PhantomData<D>);

impl<D> RawCodec<D> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct ProstDecoder<D>(PhantomData<D>);

impl<D: Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        D::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("test client cannot decode an answer: {e}")))
    }
}

impl<D: Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = Vec<u8>;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder(PhantomData)
    }
}

/// A channel to the hub at `addr` over mutual TLS, as `node`.
async fn channel_as(region: &Region, node: &str, addr: SocketAddr) -> Channel {
    let identity = region.identity(node);
    let config = zhibao::tls::client_config(&identity, &region.trust().snapshot(), HUB).unwrap();
    common::channel_with(addr, config).await.unwrap()
}

/// A generic gRPC client on `channel`, ready to send.
async fn grpc(channel: Channel) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc
}

/// A report from `origin`, signed by it.
fn signed_report(region: &Region, origin: &str) -> SignedReport {
    envelope::sign(&common::report(origin), &region.identity(origin))
}

fn id_of(item: &SignedReport) -> String {
    Report::decode(item.report.as_slice()).unwrap().id
}

fn item_bytes(item: &SignedReport) -> Vec<u8> {
    ForwardRequest {
        kind: Some(forward_request::Kind::Item(item.clone())),
    }
    .encode_to_vec()
}

/// Opens a Forward stream fed by the returned sender.
async fn open_forward(
    channel: Channel,
) -> (mpsc::Sender<Vec<u8>>, tonic::Streaming<ForwardResponse>) {
    let (tx, rx) = mpsc::channel(8);
    let response = grpc(channel)
        .await
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            PathAndQuery::from_static(FORWARD),
            RawCodec::<ForwardResponse>::new(),
        )
        .await
        .unwrap();
    (tx, response.into_inner())
}

/// The next answer on a Forward stream, at most `PATIENCE` away (the CRL
/// the hub pushes unasked is passed over).
async fn next_answer(
    answers: &mut tonic::Streaming<ForwardResponse>,
) -> Result<Option<ForwardResponse>, Status> {
    loop {
        let answer = tokio::time::timeout(PATIENCE, answers.message())
            .await
            .expect("no answer on the Forward stream in time")?;
        match answer {
            Some(ForwardResponse {
                result: Some(forward_response::Result::Crl(_)),
            }) => continue,
            other => return Ok(other),
        }
    }
}

/// Asserts that `answer` is a receipt for `id`.
fn assert_receipt_for(answer: ForwardResponse, region: &Region, id: &str) {
    match answer.result {
        Some(forward_response::Result::Receipt(receipt)) => {
            let body =
                zhibao::receipt::open(&receipt, &region.trust(), std::time::SystemTime::now())
                    .unwrap();
            assert_eq!(body.item_id, id);
        }
        other => panic!("expected a receipt for {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forward_request_carrying_an_item_and_a_chunk_is_refused() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let channel = channel_as(&region, "county-a", addr).await;
    let item = signed_report(&region, "county-a");
    let id = id_of(&item);

    // One message on the wire with both `item` (1) and `chunk` (3) set.
    let mut both = item_bytes(&item);
    both.extend(
        ForwardRequest {
            kind: Some(forward_request::Kind::Chunk(Chunk {
                item_id: id.clone(),
                attachment: 0,
                index: 0,
                data: b"not announced".to_vec(),
            })),
        }
        .encode_to_vec(),
    );
    let (tx, mut answers) = open_forward(channel.clone()).await;
    tx.send(both).await.unwrap();
    let status = match next_answer(&mut answers).await {
        Err(status) => status,
        Ok(answer) => panic!("a message with both item and chunk was answered: {answer:?}"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("item") && status.message().contains("chunk"),
        "{}",
        status.message()
    );
    // Refused by our codec, before the stream's handler saw a message: the
    // hub's log still names the peer.
    assert!(
        !common::log_lines_with(&[
            "refused message on a Forward stream",
            "peer=county-a",
            "carries both"
        ])
        .is_empty()
    );
    drop(tx);
    let stored = common::inbox_items(&region, addr).await;
    assert!(
        stored.iter().all(|s| id_of(s) != id),
        "the item of a refused message was stored"
    );

    // The same item alone, on a new stream, is taken: it was valid.
    let (tx, mut answers) = open_forward(channel).await;
    tx.send(item_bytes(&item)).await.unwrap();
    let answer = next_answer(&mut answers)
        .await
        .unwrap()
        .expect("stream ended");
    assert_receipt_for(answer, &region, &id);
    let stored = common::inbox_items(&region, addr).await;
    assert_eq!(stored.iter().filter(|s| id_of(s) == id).count(), 1);
    drop(tx);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let channel = channel_as(&region, "county-a", addr).await;
    // Field 1, length-delimited, with a length varint that never ends.
    let garbage = vec![0x0a, 0xff, 0xff];
    let err = grpc(channel)
        .await
        .unary(
            tonic::Request::new(garbage),
            PathAndQuery::from_static(DELIVER),
            RawCodec::<SignedReceipt>::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // Said as a handler's refusals are: the reason by name, in Chinese too.
    assert_eq!(
        zhibao::client::refusal_reason(&err).as_deref(),
        Some("MESSAGE_MALFORMED")
    );
    assert!(
        zhibao::client::refusal_in_chinese(&err).is_some_and(|m| m.starts_with("消息无法解码")),
        "{err:?}"
    );
    assert!(common::inbox_items(&region, addr).await.is_empty());
    // tonic refused it before any handler of ours ran: still a line that
    // names the peer, the method and why (logged before the answer left).
    let refused = |method: &str| {
        common::log_lines_with(&[
            "refused call before it reached zhibao",
            "peer=county-a",
            method,
        ])
    };
    let lines = refused("method=\"/zhibao.v1.Relay/Deliver\"");
    assert!(
        lines.iter().any(|l| l.contains("InvalidArgument")),
        "{lines:?}"
    );

    // So is a call of a method that does not exist.
    let channel = channel_as(&region, "county-a", addr).await;
    let err = grpc(channel)
        .await
        .unary(
            tonic::Request::new(vec![]),
            PathAndQuery::from_static("/zhibao.v1.Relay/NoSuchMethod"),
            RawCodec::<SignedReceipt>::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    assert_eq!(
        err.message(),
        "no method /zhibao.v1.Relay/NoSuchMethod here"
    );
    assert_eq!(
        zhibao::client::refusal_reason(&err).as_deref(),
        Some("UNKNOWN_METHOD")
    );
    assert_eq!(
        refused("method=\"/zhibao.v1.Relay/NoSuchMethod\"").len(),
        1,
        "one line for one refusal"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_request_that_is_not_grpc_is_answered_415_and_logged() {
    use tower::ServiceExt;
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let channel = channel_as(&region, "county-a", addr).await;
    let req = http::Request::post(format!("https://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/json")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let resp = channel.oneshot(req).await.unwrap();
    // gRPC over HTTP/2: another content type is HTTP 415, so that a client
    // that is not gRPC does not take a gRPC error's HTTP 200 for success.
    assert_eq!(resp.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        !common::log_lines_with(&[
            "refused call before it reached zhibao",
            "peer=county-a",
            "application/json"
        ])
        .is_empty()
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_forward_request_with_nothing_set_is_refused_per_item() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let channel = channel_as(&region, "county-a", addr).await;
    let (tx, mut answers) = open_forward(channel).await;

    // An empty ForwardRequest encodes to zero bytes.
    assert!(ForwardRequest::default().encode_to_vec().is_empty());
    tx.send(Vec::new()).await.unwrap();
    let answer = next_answer(&mut answers)
        .await
        .expect("an empty request ended the stream")
        .expect("stream ended");
    match answer.result {
        Some(forward_response::Result::Refusal(refusal)) => {
            assert_eq!(
                refusal.code,
                tonic::Code::InvalidArgument as i32,
                "{refusal:?}"
            );
            assert!(refusal.item_id.is_empty(), "{refusal:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The stream is still open: a valid item on it is receipted.
    let item = signed_report(&region, "county-a");
    let id = id_of(&item);
    tx.send(item_bytes(&item)).await.unwrap();
    let answer = next_answer(&mut answers)
        .await
        .expect("the stream failed after a refusal")
        .expect("stream ended");
    assert_receipt_for(answer, &region, &id);
    drop(tx);
    hub.shutdown(PATIENCE).await;
}

/// One HTTP/2 frame: 9-byte header, then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK literal header field without indexing, plain (no Huffman).
fn header(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    for s in [name, value] {
        assert!(s.len() < 127);
        block.push(u8::try_from(s.len()).unwrap());
        block.extend(s.as_bytes());
    }
}

#[tokio::test]
async fn the_operator_socket_serves_a_client_sending_the_socket_path_as_authority() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    // grpc-core (Python grpcio) and grpc-java put the percent-encoded socket
    // path in :authority, which is not a valid URI authority; a stock h2
    // server resets the stream. Written here frame by frame, as they send it.
    let authority = hub.operator_socket.to_str().unwrap().replace('/', "%2F");
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority.as_str()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        header(&mut block, name, value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    // An empty HealthCheckRequest (all services): no compression, length 0.
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // DATA, END_STREAM
    let mut sock = tokio::net::UnixStream::connect(&hub.operator_socket)
        .await
        .unwrap();
    sock.write_all(&out).await.unwrap();

    // Read frames until stream 1 carries data or is reset.
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut head = [0u8; 9];
            sock.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            sock.read_exact(&mut payload).await.unwrap();
            match (head[3], stream) {
                (0x0, 1) => return Ok(payload),
                (0x3, 1) => return Err(format!("stream reset: {payload:?}")),
                (0x7, _) => return Err(format!("GOAWAY: {payload:?}")),
                _ => {}
            }
        }
    })
    .await
    .expect("no answer in time")
    .unwrap();
    // One gRPC message: HealthCheckResponse { status: SERVING (1) }.
    assert_eq!(answer, [0, 0, 0, 0, 2, 0x08, 0x01]);
    drop(sock);
    hub.shutdown(PATIENCE).await;
}
