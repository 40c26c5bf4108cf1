//! What the scenarios share: the devices, the gateway, subscribing.

use std::time::Duration;

use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::pubsub::{NS_EVENT, NS_PUBSUB};
use fieldbridge_e2e::raw::RawClient;
use fieldbridge_e2e::server::{COMPONENT, Server};
use minidom::Element;
use tokio::time::Instant;

pub const PASSWORD: &str = "bench-pw";

/// How long a subscriber waits for the answers to what it asked.
pub const ANSWERS: Duration = Duration::from_secs(180);

/// The gateway's per-sender limit is a burst of 200 stanzas, then 50/s
/// (crates/fieldbridge-xmpp/src/flood.rs): one subscriber stays under it.
const PACE_BURST: usize = 150;
const PACE_RATE: f64 = 40.0;

/// Device `i`'s id, which is also its node.
pub fn device(i: usize) -> String {
    format!("dev{i:04}")
}

/// `poll` as gateway.yaml writes it.
pub fn yaml_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The `devices:` section: `devices` simulated devices of `points` points
/// each, read every `poll`, whose values change on every read: even points
/// follow a sine and odd ones a ramp, both with a 10 s period (a reading
/// every second moves a sine by up to a third of its range and a ramp by a
/// tenth of it), so no deadband or change test holds any back. Values
/// keep `decimals`, as a sensor's precision would be configured.
pub fn devices_yaml(devices: usize, points: usize, poll: &str, decimals: Option<u8>) -> String {
    let decimals = decimals.map_or(String::new(), |d| format!(", decimals: {d}"));
    let mut yaml = String::new();
    for d in 0..devices {
        yaml.push_str(&format!(
            "  {}:\n    connection: sim\n    poll: {poll}\n    period: 10s\n    points:\n",
            device(d)
        ));
        for p in 0..points {
            let (signal, unit) = if p % 2 == 0 {
                ("sine", "°C")
            } else {
                ("ramp", "kWh")
            };
            yaml.push_str(&format!(
                "      p{p}: {{ signal: {signal}, range: [0, 100], unit: \"{unit}\"{decimals} }}\n"
            ));
        }
    }
    yaml
}

/// Starts the gateway with `devices` (a `devices:` section), readable by
/// every user of `localhost`, logging at `info` as in production (the
/// fixture's `-v` would log every stanza at debug).
pub async fn start_gateway(server: &Server, devices: &str) -> anyhow::Result<Gateway> {
    Gateway::start_with_env(
        server,
        &Setup {
            read: &["localhost"],
            control: &["bench@localhost"],
            connections: "  sim: { simulator: { seed: 1 } }\n",
            devices,
        },
        &[("RUST_LOG", "info")],
    )
    .await
}

/// Stops the gateway; one that does not stop in time is killed (on drop)
/// and said so.
pub async fn stop_gateway(mut gateway: Gateway) {
    if let Err(e) = gateway.stop().await {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or_default();
        crate::progress(&format!("  (gateway killed: {first})"));
    }
}

/// A pubsub subscribe IQ for `jid` to `node`.
pub fn subscribe_iq(id: &str, jid: &str, node: &str) -> String {
    format!(
        "<iq type='set' to='{COMPONENT}' id='{id}'><pubsub xmlns='{NS_PUBSUB}'>\
         <subscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    )
}

/// Fails unless `answer` is a result; says when it was the rate limit.
pub fn check_result(answer: &Element, what: &str) -> anyhow::Result<()> {
    if answer.attr("type") == Some("result") {
        return Ok(());
    }
    let text = String::from(answer);
    anyhow::ensure!(
        !text.contains("resource-constraint"),
        "{what}: the gateway's rate limit refused it: {text}"
    );
    anyhow::bail!("{what}: {text}")
}

/// Subscribes `jid` to every node in `nodes` from one connection,
/// pipelined, paced to stay under the gateway's per-sender rate limit.
pub async fn subscribe_paced(
    client: &mut RawClient,
    jid: &str,
    nodes: &[String],
) -> anyhow::Result<()> {
    let start = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        if i >= PACE_BURST {
            let due = (i - PACE_BURST + 1) as f64 / PACE_RATE;
            tokio::time::sleep_until(start + Duration::from_secs_f64(due)).await;
        }
        client
            .send(&subscribe_iq(&format!("sub{i}"), jid, node))
            .await?;
    }
    for (i, node) in nodes.iter().enumerate() {
        let answer = client.reply_within(&format!("sub{i}"), ANSWERS).await?;
        check_result(&answer, &format!("subscribing {jid} to {node}"))?;
    }
    Ok(())
}

/// A pubsub notification from the gateway.
pub fn is_notification(e: &Element) -> bool {
    e.name() == "message"
        && e.attr("from") == Some(COMPONENT)
        && e.get_child("event", NS_EVENT).is_some()
}
