//! N devices x P points to one subscriber of every node, then the
//! flooding baseline to the same subscriber through the same server.

use std::sync::Arc;

use fieldbridge_e2e::count::{Counters, Scanner, spawn_reader};
use fieldbridge_e2e::raw::RawClient;
use fieldbridge_e2e::server::Server;

use crate::args::Args;
use crate::common::{
    PASSWORD, device, devices_yaml, is_notification, start_gateway, stop_gateway, subscribe_paced,
    yaml_duration,
};
use crate::flood::{self, Template};
use crate::measure::{Pids, Window, measure, measure_polled};

/// The one subscriber of the throughput scenarios.
pub const USER: &str = "bench";

pub struct Outcome {
    /// Readings/s the devices produce.
    pub offered: f64,
    pub fieldbridge: Window,
    pub baseline: Window,
    /// The notification the baseline copies.
    pub template: Template,
}

pub async fn run(
    server: &Server,
    args: &Args,
    devices: usize,
    points: usize,
) -> anyhow::Result<Outcome> {
    let yaml = devices_yaml(devices, points, &yaml_duration(args.poll), args.decimals);
    let gateway = start_gateway(server, &yaml).await?;
    let mut client = RawClient::login(server.c2s_port(), USER, PASSWORD).await?;
    let jid = format!("{USER}@localhost");
    let nodes: Vec<String> = (0..devices).map(device).collect();
    subscribe_paced(&mut client, &jid, &nodes).await?;
    let sample = client
        .expect(
            "a notification",
            std::time::Duration::from_secs(30),
            is_notification,
        )
        .await?;
    let template = Template::from_sample(&sample)?;
    // The counting reader must see in the copy what the parser saw.
    let found = Scanner::default().scan(template.text(1).as_bytes());
    anyhow::ensure!(
        found.messages == 1 && found.fields == template.fields as u64,
        "the byte counter reads {found:?} in a notification with {} fields: {}",
        template.fields,
        template.text(1)
    );
    let counters = Arc::new(Counters::default());
    let reader = spawn_reader(client.into_stream(), counters.clone());

    tokio::time::sleep(args.warmup).await;
    let pids = Pids {
        gateway: gateway.pid(),
        server: server.pid(),
    };
    let fieldbridge = measure_polled(&counters, pids, args.duration, args.poll).await?;
    stop_gateway(gateway).await;
    if fieldbridge.counts.messages > 0 && fieldbridge.counts.readings == 0 && template.fields > 0 {
        anyhow::bail!(
            "the subscriber counted notifications but no fields in them: the server writes \
             them differently from {}",
            template.text(1)
        );
    }

    let template = Arc::new(template);
    let flood = flood::start(server, template.clone(), counters.clone(), args.in_flight).await?;
    tokio::time::sleep(args.warmup).await;
    let baseline = measure(
        &counters,
        Pids {
            gateway: None,
            server: server.pid(),
        },
        args.duration,
    )
    .await;
    let failed = flood.finished();
    let stopped = flood.stop().await;
    reader.abort();
    let baseline = baseline?;
    stopped?;
    anyhow::ensure!(!failed, "the baseline flood ended early");
    Ok(Outcome {
        offered: (devices * points) as f64 / args.poll.as_secs_f64(),
        fieldbridge,
        baseline,
        template: Arc::unwrap_or_clone(template),
    })
}
