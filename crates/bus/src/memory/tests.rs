use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::message::last_offsets;

fn msg(i: usize) -> Message {
    Message {
        key: Bytes::from_static(b"AAPL"),
        payload: Bytes::from(i.to_string()),
        headers: Default::default(),
    }
}

fn durable(group: &str) -> ConsumerOptions {
    ConsumerOptions {
        group: group.into(),
        start: StartFrom::Earliest,
        durable: true,
    }
}

fn payloads(p: Polled) -> Vec<String> {
    match p {
        Polled::Messages(d) => d
            .iter()
            .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
            .collect(),
        other => panic!("expected messages, got {other:?}"),
    }
}

#[tokio::test]
async fn delivers_in_order_and_redelivers_uncommitted_to_the_next_consumer() {
    let bus = MemoryBus::new(100);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    bus.publish("t", (0..5).map(msg).collect()).await.unwrap();
    let first = c.recv(3).await.unwrap();
    let Polled::Messages(d) = first else { panic!() };
    assert_eq!(d.len(), 3);
    c.commit(&last_offsets(&d[..2])).await.unwrap();
    drop(c);
    // Offsets 0 and 1 were committed; 2.. come again.
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    assert_eq!(payloads(c.recv(10).await.unwrap()), ["2", "3", "4"]);
}

#[tokio::test]
async fn a_group_has_one_active_consumer() {
    let bus = MemoryBus::new(10);
    let _c = bus.consumer("t", durable("g")).await.unwrap();
    let err = bus.consumer("t", durable("g")).await.err().unwrap();
    assert!(matches!(err, BusError::GroupBusy { .. }), "{err}");
}

#[tokio::test]
async fn a_committer_commits_from_another_task() {
    let bus = MemoryBus::new(10);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    bus.publish("t", (0..3).map(msg).collect()).await.unwrap();
    let Polled::Messages(d) = c.recv(10).await.unwrap() else {
        panic!()
    };
    let committer = c.committer();
    tokio::spawn(async move { committer.commit(&last_offsets(&d[..1])).await })
        .await
        .unwrap()
        .unwrap();
    drop(c);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    assert_eq!(payloads(c.recv(10).await.unwrap()), ["1", "2"]);
}

#[tokio::test]
async fn publisher_waits_while_the_durable_group_is_full() {
    let bus = MemoryBus::new(4);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    bus.publish("t", (0..4).map(msg).collect()).await.unwrap();
    let b2 = bus.clone();
    let blocked = tokio::spawn(async move { b2.publish("t", vec![msg(4), msg(5)]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!blocked.is_finished(), "publish must wait for room");
    assert_eq!(bus.backlog("t"), 4);
    let Polled::Messages(d) = c.recv(10).await.unwrap() else {
        panic!()
    };
    c.commit(&last_offsets(&d)).await.unwrap();
    blocked.await.unwrap().unwrap();
    assert_eq!(payloads(c.recv(10).await.unwrap()), ["4", "5"]);
}

#[tokio::test]
async fn a_live_tail_never_blocks_and_learns_what_it_missed() {
    let bus = MemoryBus::new(4);
    let mut tail = bus
        .consumer(
            "t",
            ConsumerOptions {
                group: "tail".into(),
                start: StartFrom::Latest,
                durable: false,
            },
        )
        .await
        .unwrap();
    // No durable group: publishing 10 never waits, the log keeps the newest 4.
    bus.publish("t", (0..10).map(msg).collect()).await.unwrap();
    match tail.recv(100).await.unwrap() {
        Polled::Lagged(n) => assert_eq!(n, 6),
        other => panic!("expected lag, got {other:?}"),
    }
    assert_eq!(
        payloads(tail.recv(100).await.unwrap()),
        ["6", "7", "8", "9"]
    );
}

#[tokio::test]
async fn close_drains_then_ends() {
    let bus = MemoryBus::new(10);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    bus.publish("t", vec![msg(1)]).await.unwrap();
    bus.close_topic("t").await;
    assert!(matches!(
        bus.publish("t", vec![msg(2)]).await,
        Err(BusError::Closed)
    ));
    // Other topics stay open.
    bus.publish("other", vec![msg(3)]).await.unwrap();
    assert_eq!(payloads(c.recv(10).await.unwrap()), ["1"]);
    assert!(matches!(c.recv(10).await.unwrap(), Polled::Closed));
}

#[tokio::test]
async fn recv_wakes_on_publish() {
    let bus = MemoryBus::new(10);
    let mut c = bus.consumer("t", durable("g")).await.unwrap();
    let waiter = tokio::spawn(async move { c.recv(10).await.map(payloads) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.publish("t", vec![msg(7)]).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), ["7"]);
}

#[tokio::test]
async fn unknown_scheme_is_a_clear_error() {
    let err = crate::connect("rabbit://x", &Default::default())
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("rabbit") && text.contains("memory"), "{text}");
}

#[tokio::test]
async fn a_topic_nobody_holds_keeps_at_most_the_retained_bytes() {
    // Like the dead-letter topic: no durable group, large messages.
    let bus = MemoryBus::new(1_000_000);
    let big = |i: usize| Message {
        key: Bytes::new(),
        payload: Bytes::from(vec![i as u8; 1024 * 1024]),
        headers: Default::default(),
    };
    for i in 0..200 {
        bus.publish("dlq", vec![big(i)]).await.unwrap();
    }
    let t = bus.topic("dlq");
    let st = t.state.lock();
    assert!(st.bytes <= RETAINED_BYTES, "{} bytes kept", st.bytes);
    assert!(st.log.len() < 200 && !st.log.is_empty(), "{}", st.log.len());
    assert_eq!(st.bytes, st.log.iter().map(|m| size_of(m)).sum::<usize>());
    // The newest are the ones kept.
    assert_eq!(st.log.back().unwrap().payload[0], 199);
}
