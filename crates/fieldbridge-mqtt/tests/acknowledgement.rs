//! A write at QoS 1 is done when the broker acknowledges it, not when it is
//! sent. A real broker acknowledges at once, so these tests play the broker
//! by hand (a few MQTT 3.1.1 packets over loopback TCP) to hold the PUBACK
//! back, drop the connection with it pending, and say whether the session
//! was kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: fail loudly

mod common;

use std::time::Duration;

use common::{Rig, WAIT, connection, device};
use fieldbridge_core::{CommandError, Value};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one MQTT packet: (first byte, body).
async fn packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let first = s.read_u8().await.unwrap();
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await.unwrap();
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    (first, body)
}

/// Reads packets until one whose type (high nibble) is `kind`.
async fn expect(s: &mut TcpStream, kind: u8) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        loop {
            let p = packet(s).await;
            if p.0 >> 4 == kind {
                return p;
            }
            if p.0 >> 4 == 12 {
                // PINGREQ: answer, keep reading.
                s.write_all(&[0xd0, 0x00]).await.unwrap();
            }
        }
    })
    .await
    .expect("the packet in time")
}

#[tokio::test]
async fn a_qos1_write_waits_for_the_pubacks_and_a_qos0_write_does_not() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plug = device(
        "plug",
        json!({ "topic": "tele/plug/SENSOR" }),
        &[
            (
                "relay",
                json!({ "type": "bool", "topic": "stat/plug/POWER", "command_topic": "cmnd/plug/POWER", "qos": 1 }),
            ),
            (
                "level",
                json!({ "topic": "stat/plug/LEVEL", "command_topic": "cmnd/plug/LEVEL", "qos": 0 }),
            ),
        ],
        &["relay", "level"],
    );
    let rig = Rig::start(
        connection(&format!("mqtt://127.0.0.1:{port}"), json!({})),
        vec![plug],
    );
    let (mut s, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("the adapter connects")
        .unwrap();
    expect(&mut s, 1).await; // CONNECT
    s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap(); // CONNACK, no session
    let (_, sub) = expect(&mut s, 8).await; // SUBSCRIBE
    let filters = {
        // pkid, then (len, filter, qos)*
        let mut n = 0;
        let mut i = 2;
        while i < sub.len() {
            let l = usize::from(u16::from_be_bytes([sub[i], sub[i + 1]]));
            i += 2 + l + 1;
            n += 1;
        }
        n
    };
    let mut suback = vec![0x90, 2 + filters as u8, sub[0], sub[1]];
    suback.extend(std::iter::repeat_n(1u8, filters));
    s.write_all(&suback).await.unwrap();
    rig.until("subscribed", |st| st.subacks() >= 1).await;

    // QoS 1: the write is published ...
    let router = rig.router.clone();
    let mut write = tokio::spawn(async move { router.write_text("plug", "relay", "on").await });
    let (first, publish) = expect(&mut s, 3).await;
    assert_eq!(first & 0x06, 0x02, "QoS 1");
    let topic_len = usize::from(u16::from_be_bytes([publish[0], publish[1]]));
    assert_eq!(&publish[2..2 + topic_len], b"cmnd/plug/POWER");
    let pkid = [publish[2 + topic_len], publish[3 + topic_len]];
    assert_eq!(&publish[4 + topic_len..], b"true");
    // ... and not done while the broker holds its acknowledgement back.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut write)
            .await
            .is_err(),
        "the write finished before the PUBACK"
    );
    s.write_all(&[0x40, 0x02, pkid[0], pkid[1]]).await.unwrap();
    let answer = tokio::time::timeout(WAIT, write)
        .await
        .expect("answered after the PUBACK")
        .unwrap();
    assert_eq!(answer, Ok(Value::Bool(true)));

    // QoS 0: done once sent, no acknowledgement exists.
    let answer = tokio::time::timeout(WAIT, rig.router.write_text("plug", "level", "7"))
        .await
        .expect("answered when sent");
    assert_eq!(answer, Ok(Value::Float(7.0)));
    let (first, publish) = expect(&mut s, 3).await;
    assert_eq!(first & 0x06, 0x00, "QoS 0");
    assert!(publish.ends_with(b"7"));
    rig.stop().await;
}

/// Accepts the adapter's next connection and answers its CONNECT.
async fn accept(listener: &TcpListener, session_present: bool) -> TcpStream {
    let (mut s, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("the adapter connects")
        .unwrap();
    expect(&mut s, 1).await; // CONNECT
    s.write_all(&[0x20, 0x02, u8::from(session_present), 0x00])
        .await
        .unwrap();
    s
}

/// The packet id of a PUBLISH body at QoS 1.
fn pkid_of(publish: &[u8]) -> [u8; 2] {
    let topic_len = usize::from(u16::from_be_bytes([publish[0], publish[1]]));
    [publish[2 + topic_len], publish[3 + topic_len]]
}

#[tokio::test]
async fn after_a_reconnect_writes_are_matched_to_their_own_acknowledgements() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plug = device(
        "plug",
        json!({ "topic": "tele/plug/SENSOR" }),
        &[(
            "relay",
            json!({ "type": "bool", "command_topic": "cmnd/plug/POWER", "qos": 1 }),
        )],
        &["relay"],
    );
    // One message in flight: rumqttc gives every publish packet id 1, so a
    // stale id is reused at once.
    let rig = Rig::start(
        connection(
            &format!("mqtt://127.0.0.1:{port}"),
            json!({ "max_inflight": 1 }),
        ),
        vec![plug],
    );
    let write = |value: &'static str| {
        let router = rig.router.clone();
        tokio::spawn(async move { router.write_text("plug", "relay", value).await })
    };
    let answer = |w: tokio::task::JoinHandle<Result<Value, CommandError>>| async move {
        tokio::time::timeout(WAIT, w)
            .await
            .expect("the write is answered")
            .unwrap()
    };

    let mut s = accept(&listener, false).await;
    rig.until("connected", |st| st.connects() >= 1).await;
    let lost = write("on");
    let (_, publish) = expect(&mut s, 3).await;
    assert_eq!(pkid_of(&publish), [0, 1]);
    drop(s); // the broker goes away before acknowledging it
    let lost = answer(lost).await;
    assert!(
        lost.is_err_and(|e| e.to_string().contains("lost")),
        "answered as lost"
    );

    // Back without the session: rumqttc drops the unacknowledged publish.
    let mut s = accept(&listener, false).await;
    rig.until("reconnected", |st| st.connects() >= 2).await;
    let next = write("off");
    let (_, publish) = expect(&mut s, 3).await;
    assert!(
        publish.ends_with(b"false"),
        "the new write, not the old one"
    );
    let pkid = pkid_of(&publish);
    s.write_all(&[0x40, 0x02, pkid[0], pkid[1]]).await.unwrap();
    assert_eq!(answer(next).await, Ok(Value::Bool(false)));

    // Lost again, then back with the session: the old publish comes first.
    let held = write("on");
    expect(&mut s, 3).await;
    drop(s);
    assert!(answer(held).await.is_err());
    let mut s = accept(&listener, true).await;
    rig.until("resumed", |st| st.connects() >= 3).await;
    let (_, replay) = expect(&mut s, 3).await;
    assert!(replay.ends_with(b"true"), "the held write is resent first");
    let pkid = pkid_of(&replay);
    s.write_all(&[0x40, 0x02, pkid[0], pkid[1]]).await.unwrap();
    let last = write("off");
    let (_, publish) = expect(&mut s, 3).await;
    assert!(publish.ends_with(b"false"));
    let pkid = pkid_of(&publish);
    s.write_all(&[0x40, 0x02, pkid[0], pkid[1]]).await.unwrap();
    assert_eq!(answer(last).await, Ok(Value::Bool(false)));
    rig.stop().await;
}
