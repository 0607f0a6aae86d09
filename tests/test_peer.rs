//! The in-process relay peer (`tests/peer.rs`): each behavior as a real WebSocket client sees it.

use std::time::{Duration, Instant};

use crate::peer::{
    fast_event_id, ok_frame, oversized, reply_to, Behavior, Counters, Peer, PeerStats,
};
use futures_util::{SinkExt, StreamExt};
use lt::nostr::keys;
use lt::nostr::message::{close_frame, event_frame, req_frame};
use lt::nostr::{Event, RelayMessage, Unsigned};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

fn event(n: u8) -> Event {
    let kp = keys::keypair_from_material([7; 32]);
    Unsigned {
        pubkey: keys::pubkey(&kp),
        created_at: 1_770_000_000 + u64::from(n),
        kind: 1,
        tags: vec![vec!["t".into(), "peer".into()]],
        content: format!("peer test {n}"),
    }
    .sign(&kp, &[n; 32])
}

/// Connects over a TcpStream opened here, as replay does.
async fn connect(peer: &Peer) -> Ws {
    let tcp = TcpStream::connect(peer.addr()).await.expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = tokio_tungstenite::client_async(peer.url(), tcp)
        .await
        .expect("websocket handshake");
    ws
}

async fn send(ws: &mut Ws, frame: String) {
    ws.send(Message::Text(frame.into())).await.expect("send");
}

/// The next text frame within `wait`, `None` on timeout; panics if the connection ends.
async fn recv_within(ws: &mut Ws, wait: Duration) -> Option<String> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

async fn recv(ws: &mut Ws) -> String {
    recv_within(ws, Duration::from_secs(5))
        .await
        .expect("an answer within 5 s")
}

fn ok_id(frame: &str) -> [u8; 32] {
    match RelayMessage::parse(frame) {
        Ok(RelayMessage::Ok {
            id,
            accepted: true,
            message,
        }) if message.is_empty() => id,
        other => panic!("expected OK true, got {other:?} from {frame}"),
    }
}

/// Stats are updated just before the answers go out; wait for the peer to catch up with
/// what it has not answered.
async fn stats_when(peer: &Peer, done: impl Fn(&PeerStats) -> bool) -> PeerStats {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = peer.stats();
        if done(&s) || Instant::now() > until {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_all_answers_events_and_reqs() {
    let peer = Peer::start(Behavior::AckAll).await.unwrap();
    assert!(peer.url().starts_with("ws://127.0.0.1:"), "{}", peer.url());
    assert!(peer.url().ends_with('/'));
    let mut ws = connect(&peer).await;
    let events: Vec<Event> = (1..=3).map(event).collect();
    let mut frames: Vec<String> = events.iter().map(event_frame).collect();
    // Not the way lt writes it: takes the parsing path.
    frames.push(format!(r#"[ "EVENT", {} ]"#, event(4).to_json()));
    frames.push(req_frame("feed", &[r#"{"kinds":[1],"limit":5}"#]));
    frames.push(close_frame("feed"));
    frames.push(req_frame("sub \"2\"", &["{}"]));
    let bytes: usize = frames.iter().map(String::len).sum();
    for f in frames {
        send(&mut ws, f).await;
    }
    for e in events.iter().chain([&event(4)]) {
        assert_eq!(ok_id(&recv(&mut ws).await), e.id);
    }
    assert_eq!(
        RelayMessage::parse(&recv(&mut ws).await).unwrap(),
        RelayMessage::Eose("feed".into())
    );
    // CLOSE has no answer: the next frame is the second REQ's EOSE.
    assert_eq!(
        RelayMessage::parse(&recv(&mut ws).await).unwrap(),
        RelayMessage::Eose("sub \"2\"".into())
    );
    send(&mut ws, "not json".into()).await;
    assert!(matches!(
        RelayMessage::parse(&recv(&mut ws).await),
        Ok(RelayMessage::Notice(_))
    ));
    assert_eq!(
        peer.stats(),
        PeerStats {
            accepted: 1,
            websockets: 1,
            messages: 8,
            events_acked: 4,
            reqs_answered: 2,
            bytes_received: (bytes + "not json".len()) as u64,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_reads_and_never_answers() {
    let peer = Peer::start(Behavior::Stall).await.unwrap();
    let mut ws = connect(&peer).await;
    send(&mut ws, event_frame(&event(1))).await;
    send(&mut ws, req_frame("s", &["{}"])).await;
    assert_eq!(recv_within(&mut ws, Duration::from_millis(300)).await, None);
    let s = stats_when(&peer, |s| s.messages == 2).await;
    assert_eq!((s.accepted, s.messages), (1, 2));
    assert_eq!((s.events_acked, s.reqs_answered), (0, 0));
}

/// Reads until the connection ends; returns the text frames seen and whether a close frame
/// came (the peer must not send one).
async fn until_end(ws: &mut Ws) -> (Vec<String>, bool) {
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => panic!("connection still open after 5 s; got {texts:?}"),
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(_)))) => return (texts, true),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return (texts, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_ends_each_connection_after_n_messages() {
    let peer = Peer::start(Behavior::DropAfter { after_messages: 3 })
        .await
        .unwrap();
    for round in 1..=2u64 {
        let mut ws = connect(&peer).await;
        // One at a time: a pipelined send could race the drop and fail on our side.
        for n in 1..=3 {
            send(&mut ws, event_frame(&event(n))).await;
            assert_eq!(ok_id(&recv(&mut ws).await), event(n).id, "round {round}");
        }
        let (texts, closed) = until_end(&mut ws).await;
        assert!(texts.is_empty(), "{texts:?}");
        assert!(!closed, "the peer sent a close frame");
        assert_eq!(peer.stats().accepted, round);
    }
    assert_eq!(peer.stats().events_acked, 6);
}

/// A pipelining client (replay's case): the peer may drop while input is still unread, so the
/// kernel resets the connection and the client may see fewer acks, but never more and never
/// out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_with_pipelined_events() {
    let peer = Peer::start(Behavior::DropAfter { after_messages: 3 })
        .await
        .unwrap();
    let mut ws = connect(&peer).await;
    let events: Vec<Event> = (1..=8).map(event).collect();
    for e in &events {
        // Writes after the drop fail on our side: that is the fault under test.
        if ws.feed(Message::Text(event_frame(e).into())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let (texts, closed) = until_end(&mut ws).await;
    assert!(!closed, "the peer sent a close frame");
    let ids: Vec<[u8; 32]> = texts.iter().map(|t| ok_id(t)).collect();
    let want: Vec<[u8; 32]> = events.iter().map(|e| e.id).take(ids.len()).collect();
    assert!(ids.len() <= 3, "{} acks", ids.len());
    assert_eq!(ids, want);
    assert_eq!(
        stats_when(&peer, |s| s.events_acked == 3)
            .await
            .events_acked,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_comes_before_each_ack() {
    let oversized_bytes = 300_000;
    let peer = Peer::start(Behavior::Garbage {
        oversized_every: 2,
        oversized_bytes,
    })
    .await
    .unwrap();
    let mut ws = connect(&peer).await;
    for n in 1..=4u8 {
        let e = event(n);
        send(&mut ws, event_frame(&e)).await;
        let (mut unparseable, mut notices, mut oversized) = (0, 0, Vec::new());
        let ack = loop {
            let frame = recv(&mut ws).await;
            if frame.len() > 1000 {
                oversized.push(frame.len());
            }
            match RelayMessage::parse(&frame) {
                Err(_) => unparseable += 1,
                Ok(RelayMessage::Notice(_)) => notices += 1,
                Ok(RelayMessage::Ok { .. }) => break frame,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(ok_id(&ack), e.id);
        assert_eq!(unparseable, 2, "message {n}: garbage and unknown type");
        let want: Vec<usize> = if n % 2 == 0 {
            vec![oversized_bytes]
        } else {
            vec![]
        };
        assert_eq!(oversized, want, "message {n}");
        assert_eq!(notices, 1 + want.len(), "message {n}");
    }
    send(&mut ws, req_frame("s", &["{}"])).await;
    let mut last = String::new();
    for _ in 0..4 {
        last = recv(&mut ws).await;
    }
    assert_eq!(
        RelayMessage::parse(&last).unwrap(),
        RelayMessage::Eose("s".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_each_answer_without_adding_up() {
    let delay = Duration::from_millis(200);
    let peer = Peer::start(Behavior::Delay { delay }).await.unwrap();
    let mut ws = connect(&peer).await;
    let events: Vec<Event> = (1..=3).map(event).collect();
    let start = Instant::now();
    for e in &events {
        send(&mut ws, event_frame(e)).await;
    }
    send(&mut ws, req_frame("s", &["{}"])).await;
    for e in &events {
        assert_eq!(ok_id(&recv(&mut ws).await), e.id);
        assert!(
            start.elapsed() >= delay,
            "answered after {:?}",
            start.elapsed()
        );
    }
    assert_eq!(
        RelayMessage::parse(&recv(&mut ws).await).unwrap(),
        RelayMessage::Eose("s".into())
    );
    // Pipelined messages wait once, not once each.
    assert!(
        start.elapsed() < delay * 2,
        "took {:?} for 4 pipelined messages",
        start.elapsed()
    );
    // The delay is per message, from its own arrival.
    let sent = Instant::now();
    send(&mut ws, event_frame(&event(9))).await;
    assert_eq!(ok_id(&recv(&mut ws).await), event(9).id);
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_before_the_handshake() {
    let peer = Peer::start(Behavior::AckAll).await.unwrap();
    assert_eq!(peer.stats().accepted, 0);
    let _raw = TcpStream::connect(peer.addr()).await.unwrap();
    let s = stats_when(&peer, |s| s.accepted == 1).await;
    assert_eq!(s.accepted, 1);
    assert_eq!(s.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_connections() {
    let peer = Peer::start(Behavior::AckAll).await.unwrap();
    let conns = 2000;
    let frame = event_frame(&event(1));
    let mut all = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (addr, url) = (peer.addr(), peer.url());
        all.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("tcp connect");
            let (ws, _) = tokio_tungstenite::client_async(url, tcp)
                .await
                .expect("handshake");
            ws
        }));
    }
    let mut open = Vec::with_capacity(conns);
    for task in all {
        open.push(task.await.unwrap());
    }
    // Every connection is open at once, and each still gets its answer.
    for ws in &mut open {
        send(ws, frame.clone()).await;
    }
    for ws in &mut open {
        assert_eq!(ok_id(&recv(ws).await), event(1).id);
    }
    let s = peer.stats();
    assert_eq!((s.accepted, s.events_acked), (conns as u64, conns as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_stops_accepting() {
    let peer = Peer::start(Behavior::Stall).await.unwrap();
    let addr = peer.addr();
    let mut ws = connect(&peer).await;
    peer.shutdown();
    let (texts, closed) = until_end(&mut ws).await;
    assert!(texts.is_empty() && !closed);
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

// The frames the peer writes, as the replay bench relies on them.

#[test]
fn fast_path_takes_only_well_formed_ids() {
    let id = "b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30";
    let frame = format!(r#"["EVENT",{{"id":"{id}","kind":1}}]"#);
    assert_eq!(fast_event_id(&frame), Some(id));
    let upper = frame.replace('b', "B");
    assert_eq!(fast_event_id(&upper), None);
    let short = format!(r#"["EVENT",{{"id":"{}","kind":1}}]"#, &id[..63]);
    assert_eq!(fast_event_id(&short), None);
    let long = format!(r#"["EVENT",{{"id":"{id}0","kind":1}}]"#);
    assert_eq!(fast_event_id(&long), None);
    assert_eq!(fast_event_id(r#"["EVENT",{"id":""#), None);
    // A multi-byte character where the id should be must not panic on a char boundary.
    let odd = format!(r#"["EVENT",{{"id":"é{}"}}]"#, &id[..62]);
    assert_eq!(fast_event_id(&odd), None);
}

#[test]
fn slow_path_reads_ids_in_any_key_order() {
    let id = "b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30";
    let counters = Counters::default();
    let frame = format!(r#"[ "EVENT", {{"kind":1, "id":"{id}"}} ]"#);
    assert_eq!(reply_to(&frame, &counters), Some(ok_frame(id)));
    assert_eq!(
        reply_to(r#"["REQ","s",{}]"#, &counters).as_deref(),
        Some(r#"["EOSE","s"]"#)
    );
    assert_eq!(reply_to(r#"["CLOSE","s"]"#, &counters), None);
    let stats = counters.snapshot();
    assert_eq!((stats.events_acked, stats.reqs_answered), (1, 1));
}

#[test]
fn oversized_frames_have_the_asked_size() {
    for n in [0, 1, 12, 13, 14, 100, 70_000] {
        assert_eq!(oversized(n).len(), n);
    }
    assert!(RelayMessage::parse(&oversized(100)).is_ok());
}
