//! The many-user scenarios: subscribe IQs/s with subscriptions existing,
//! and the gateway's memory with many subscribers.
//!
//! Users are real accounts, created by in-band registration (XEP-0077),
//! 16 at a time, and each logs in on its own c2s connection. Every user
//! sends at most 20 stanzas to the gateway in a scenario, well under the
//! per-sender burst of 200, so the rate limiter never takes part: what is
//! measured is the gateway (and the server) handling subscriptions.

use std::sync::Arc;
use std::time::Duration;

use fieldbridge_e2e::count::{Counters, spawn_reader};
use fieldbridge_e2e::procfs::{self, Memory};
use fieldbridge_e2e::raw::{self, RawClient};
use fieldbridge_e2e::server::{COMPONENT, Server};
use futures::StreamExt;
use tokio::time::Instant;

use crate::args::Args;
use crate::common::{
    ANSWERS, PASSWORD, check_result, device, devices_yaml, start_gateway, stop_gateway,
    subscribe_iq, yaml_duration,
};
use crate::measure::{Pids, Window, measure_polled};

/// Node subscriptions per user, as the scenarios say.
pub const NODES_PER_USER: usize = 10;
/// Further subscriptions per user in the timed subscribe round.
pub const MORE_PER_USER: usize = 5;
/// At once, while registering and logging in.
const AT_ONCE: usize = 16;

pub fn user(i: usize) -> String {
    format!("u{i:04}")
}

/// How long something took, and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Timed {
    pub count: usize,
    pub secs: f64,
    pub gateway_cpu: Option<f64>,
    pub server_cpu: Option<f64>,
}

impl Timed {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }
    pub fn gateway_us_each(&self) -> Option<f64> {
        Some(self.gateway_cpu? * 1e6 / self.count as f64)
    }
}

fn cpu(pid: Option<u32>) -> anyhow::Result<Option<f64>> {
    pid.map(procfs::cpu_seconds).transpose()
}

/// Runs `work` and times it, with the CPU the processes used meanwhile.
async fn timed<T>(
    pids: Pids,
    count: usize,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Timed)> {
    let (g0, s0) = (cpu(pids.gateway)?, cpu(pids.server)?);
    let t0 = Instant::now();
    let out = work.await?;
    let secs = t0.elapsed().as_secs_f64();
    let (g1, s1) = (cpu(pids.gateway)?, cpu(pids.server)?);
    Ok((
        out,
        Timed {
            count,
            secs,
            gateway_cpu: g1.zip(g0).map(|(a, b)| a - b),
            server_cpu: s1.zip(s0).map(|(a, b)| a - b),
        },
    ))
}

/// Creates the users' accounts.
pub async fn register(server: &Server, users: usize) -> anyhow::Result<Timed> {
    let port = server.c2s_port();
    let pids = Pids {
        gateway: None,
        server: server.pid(),
    };
    let work = async {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..users)
            .map(|i| async move { raw::register(port, &user(i), PASSWORD).await })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()
    };
    Ok(timed(pids, users, work).await?.1)
}

/// Logs every user in, each on a connection of its own.
pub async fn login(server: &Server, users: usize) -> anyhow::Result<(Vec<RawClient>, Timed)> {
    let port = server.c2s_port();
    let pids = Pids {
        gateway: None,
        server: server.pid(),
    };
    let work = async {
        let clients: Vec<anyhow::Result<RawClient>> = futures::stream::iter(0..users)
            .map(|i| async move { RawClient::login(port, &user(i), PASSWORD).await })
            .buffered(AT_ONCE)
            .collect()
            .await;
        clients.into_iter().collect::<anyhow::Result<Vec<_>>>()
    };
    timed(pids, users, work).await
}

/// What each user subscribes to: nodes and presences.
struct Plan {
    nodes: Vec<String>,
    presences: Vec<String>,
}

/// Every user sends its whole plan at once, then waits for every answer;
/// all users at the same time. Returns the clients in their order.
async fn subscribe_all(
    clients: Vec<RawClient>,
    round: &str,
    plan: impl Fn(usize) -> Plan,
) -> anyhow::Result<Vec<RawClient>> {
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let Plan { nodes, presences } = plan(i);
            let jid = format!("{}@localhost", user(i));
            let round = round.to_owned();
            tokio::spawn(async move {
                if !presences.is_empty() {
                    // As a client does before it adds contacts: Prosody
                    // passes a contact's `subscribed` on only to resources
                    // that asked for the roster.
                    let id = format!("{round}roster");
                    c.send(&format!(
                        "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
                    ))
                    .await?;
                    let answer = c.reply_within(&id, ANSWERS).await?;
                    check_result(&answer, &format!("{jid}'s roster"))?;
                }
                for (k, node) in nodes.iter().enumerate() {
                    c.send(&subscribe_iq(&format!("{round}{k}"), &jid, node))
                        .await?;
                }
                for d in &presences {
                    c.send(&format!(
                        "<presence type='subscribe' to='{d}@{COMPONENT}'/>"
                    ))
                    .await?;
                }
                for (k, node) in nodes.iter().enumerate() {
                    let answer = c.reply_within(&format!("{round}{k}"), ANSWERS).await?;
                    check_result(&answer, &format!("subscribing {jid} to {node}"))?;
                }
                for d in &presences {
                    let from = format!("{d}@{COMPONENT}");
                    c.expect(
                        &format!("{from}'s answer to {jid}'s presence subscription"),
                        ANSWERS,
                        |e| {
                            e.name() == "presence"
                                && e.attr("type") == Some("subscribed")
                                && e.attr("from")
                                    .is_some_and(|f| f.split('/').next() == Some(from.as_str()))
                        },
                    )
                    .await?;
                }
                anyhow::Ok(c)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in futures::future::join_all(tasks).await {
        out.push(t??);
    }
    Ok(out)
}

/// Node `k` of user `i`'s: users cover the devices in turn, so that
/// every device gets the same number of subscribers.
fn node_of(i: usize, k: usize, devices: usize) -> String {
    device((i * NODES_PER_USER + k) % devices)
}

pub struct SubscribeOutcome {
    /// Subscriptions before the timed round.
    pub existing: usize,
    /// Making those, from none.
    pub first: Timed,
    /// The timed round.
    pub more: Timed,
    pub memory: Option<Memory>,
}

/// On a gateway whose devices are quiet (read once an hour), every user
/// subscribes to [`NODES_PER_USER`] nodes (the existing subscriptions),
/// then, timed, to [`MORE_PER_USER`] more.
pub async fn subscribe(
    server: &Server,
    args: &Args,
    clients: Vec<RawClient>,
) -> anyhow::Result<(Vec<RawClient>, SubscribeOutcome)> {
    let devices = args.scale_devices;
    let users = clients.len();
    let yaml = devices_yaml(devices, args.scale_points, "1h", args.decimals);
    let gateway = start_gateway(server, &yaml).await?;
    let pids = Pids {
        gateway: gateway.pid(),
        server: server.pid(),
    };
    let (clients, first) = timed(
        pids,
        users * NODES_PER_USER,
        subscribe_all(clients, "a", |i| Plan {
            nodes: (0..NODES_PER_USER)
                .map(|k| node_of(i, k, devices))
                .collect(),
            presences: Vec::new(),
        }),
    )
    .await?;
    let (clients, more) = timed(
        pids,
        users * MORE_PER_USER,
        subscribe_all(clients, "b", |i| Plan {
            nodes: (0..MORE_PER_USER)
                .map(|k| node_of(i, k + devices / 2, devices))
                .collect(),
            presences: Vec::new(),
        }),
    )
    .await?;
    let memory = gateway.pid().map(procfs::memory).transpose()?;
    stop_gateway(gateway).await;
    Ok((
        clients,
        SubscribeOutcome {
            existing: users * NODES_PER_USER,
            first,
            more,
            memory,
        },
    ))
}

pub struct ScaleOutcome {
    pub users: usize,
    pub subscriptions: usize,
    /// Making them (on the quiet gateway).
    pub setup: Timed,
    /// Readings/s the devices produce, times their subscribers.
    pub offered: f64,
    pub window: Window,
}

/// Every user subscribes to [`NODES_PER_USER`] nodes and to the presence of
/// the same devices, on the gateway with its devices quiet (so that
/// setting up is not slowed by what it measures); the gateway is then
/// restarted with the same state and its devices read every `--poll`,
/// and measured while every subscriber reads what it gets.
pub async fn scale(
    server: &Server,
    args: &Args,
    clients: Vec<RawClient>,
) -> anyhow::Result<ScaleOutcome> {
    let devices = args.scale_devices;
    let users = clients.len();
    let quiet = devices_yaml(devices, args.scale_points, "1h", args.decimals);
    let mut gateway = start_gateway(server, &quiet).await?;
    let pids = Pids {
        gateway: gateway.pid(),
        server: server.pid(),
    };
    let plan = |i: usize| {
        let nodes: Vec<String> = (0..NODES_PER_USER)
            .map(|k| node_of(i, k, devices))
            .collect();
        Plan {
            presences: nodes.clone(),
            nodes,
        }
    };
    let (clients, setup) = timed(
        pids,
        users * NODES_PER_USER * 2,
        subscribe_all(clients, "s", plan),
    )
    .await?;
    let counters = Arc::new(Counters::default());
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| spawn_reader(c.into_stream(), counters.clone()))
        .collect();
    let result = async {
        gateway.stop().await?;
        let poll = format!("poll: {}", yaml_duration(args.poll));
        gateway.edit_config(|yaml| yaml.replace("poll: 1h", &poll))?;
        gateway.restart().await?;
        tokio::time::sleep(args.warmup).await;
        let pids = Pids {
            gateway: gateway.pid(),
            server: server.pid(),
        };
        measure_polled(&counters, pids, args.duration, args.poll).await
    }
    .await;
    stop_gateway(gateway).await;
    for r in &readers {
        r.abort();
    }
    let subscribers_per_device = (users * NODES_PER_USER) as f64 / devices as f64;
    Ok(ScaleOutcome {
        users,
        subscriptions: users * NODES_PER_USER * 2,
        setup,
        offered: (devices * args.scale_points) as f64 / args.poll.as_secs_f64()
            * subscribers_per_device,
        window: result?,
    })
}

/// The whole many-user part of one server must end within this (every
/// wait in it has its own deadline too).
pub const DEADLINE: Duration = Duration::from_secs(900);
