//! End-to-end: the real gateway under systemd's notify protocol, with the
//! test as the service manager: a Unix datagram socket in `NOTIFY_SOCKET`
//! and a short `WATCHDOG_USEC`. It must say READY=1 with a STATUS= line,
//! STATUS= again when the XMPP link comes up, WATCHDOG=1 at half the
//! watchdog period (also while the link is down and reconnecting), and
//! STOPPING=1 on SIGTERM.

use std::time::Duration;

use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::prosody::Prosody;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

const DEVICES: &str = "  boiler:\n    connection: sim\n    poll: 100ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n  \
pump:\n    connection: sim\n    points:\n      on: { signal: toggle }\n";

/// A notification from the gateway: its `KEY=value` lines.
async fn next(socket: &UnixDatagram, within: Duration, gateway: &Gateway) -> Vec<String> {
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(within, socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no notification within {within:?}; gateway log:\n{}",
                gateway.log()
            )
        })
        .unwrap();
    String::from_utf8(buf[..n].to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut server = Prosody::start().await.expect("prosody starts");
    let mut gateway = Gateway::launch(
        &server,
        &Setup {
            read: &["localhost"],
            control: &[],
            connections: "  sim: { simulator: {} }\n",
            devices: DEVICES,
        },
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // 2 s: pings every second.
            ("WATCHDOG_USEC", "2000000"),
        ],
    )
    .unwrap();

    // READY=1 first, with the summary.
    let first = next(&socket, Duration::from_secs(20), &gateway).await;
    assert_eq!(first[0], "READY=1", "{first:?}");
    let status = first
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {first:?}"));
    assert!(status.contains("; 2 devices"), "{status}");

    // The link comes up (a STATUS= saying so), and pings come at about
    // half of WATCHDOG_USEC.
    let mut link_up = status.starts_with("XMPP link up");
    let mut pings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(link_up && pings.len() >= 3) {
        assert!(
            Instant::now() < deadline,
            "link up: {link_up}, pings: {}",
            pings.len()
        );
        let lines = next(&socket, Duration::from_secs(5), &gateway).await;
        if lines.iter().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
        // The devices' statuses too, from the same snapshot as /healthz.
        if lines
            .iter()
            .any(|l| l == "STATUS=XMPP link up; 2 devices: 2 online")
        {
            link_up = true;
        }
    }
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            // More than WATCHDOG_USEC apart, systemd would have killed it.
            gap >= Duration::from_millis(300) && gap < Duration::from_secs(2),
            "pings {gap:?} apart, expected about 1 s"
        );
    }

    // The server goes away: the status says so, and the pings go on while
    // the connection loop reconnects (it is alive, only the link is not).
    server.stop().await.unwrap();
    let mut link_down = false;
    let mut pings_while_down = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(link_down && pings_while_down >= 3) {
        assert!(
            Instant::now() < deadline,
            "link down seen: {link_down}, pings since: {pings_while_down}"
        );
        let lines = next(&socket, Duration::from_secs(5), &gateway).await;
        if lines
            .iter()
            .any(|l| l.starts_with("STATUS=XMPP link down (connecting); 2 devices"))
        {
            link_down = true;
        }
        if link_down && lines.iter().any(|l| l == "WATCHDOG=1") {
            pings_while_down += 1;
        }
    }

    // SIGTERM: STOPPING=1 before it exits.
    let status = gateway.stop().await.unwrap();
    assert!(status.success(), "{status:?}");
    let mut stopping = false;
    let mut buf = vec![0; 4096];
    while let Ok(n) = socket.try_recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        stopping |= text.lines().any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1; gateway log:\n{}", gateway.log());
}
