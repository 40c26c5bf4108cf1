//! The bench's command line.

use std::time::Duration;

use fieldbridge_e2e::server::ServerKind;

pub const USAGE: &str = "\
fieldbridge end-to-end bench: simulator devices -> the real fieldbridge binary ->
a real Prosody / ejabberd -> c2s subscribers, beside a trivial flooding component.

usage: cargo bench --locked --bench e2e -- [options]
       (FIELDBRIDGE_BIN=path/to/release/fieldbridge; default: ../target/release/fieldbridge)

  --servers LIST     prosody,ejabberd (default: both)
  --scenarios LIST   any of NxP (N devices x P points, one subscriber of every
                     node, and the flooding baseline beside it), scale (RSS with
                     --scale devices and --users subscribers, each subscribed to
                     10 nodes and 10 devices' presence), subscribe (subscribe
                     IQs/s with 10 subscriptions per user existing)
                     (default: 200x5,100x10,subscribe,scale)
  --duration D       measurement window (default: 10s)
  --warmup D         before each window (default: 3s)
  --poll D           device poll period (default: 1s)
  --decimals N|none  decimals kept per point, a sensor's precision (default: 2;
                     none for a gateway older than the setting)
  --scale NxP        devices x points of scale and subscribe (default: 1000x10)
  --users N          c2s users of scale and subscribe (default: 1000)
  --in-flight N      notifications the baseline keeps in flight (default: 2000)

Durations: 500ms, 10s, 2m. Example of a quick run:
  cargo bench --locked --bench e2e -- --servers prosody --scenarios 100x10 --duration 3s --warmup 1s
";

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `devices` x `points`, one subscriber of every node, and the baseline.
    Throughput { devices: usize, points: usize },
    /// The subscribe rate with existing subscriptions.
    Subscribe,
    /// RSS with many subscribers.
    Scale,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scenario::Throughput { devices, points } => write!(f, "{devices}x{points}"),
            Scenario::Subscribe => write!(f, "subscribe"),
            Scenario::Scale => write!(f, "scale"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Args {
    pub servers: Vec<ServerKind>,
    pub scenarios: Vec<Scenario>,
    pub duration: Duration,
    pub warmup: Duration,
    pub poll: Duration,
    /// `decimals` of every simulated point, if any.
    pub decimals: Option<u8>,
    pub scale_devices: usize,
    pub scale_points: usize,
    pub users: usize,
    pub in_flight: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            servers: vec![ServerKind::Prosody, ServerKind::Ejabberd],
            scenarios: vec![
                Scenario::Throughput {
                    devices: 200,
                    points: 5,
                },
                Scenario::Throughput {
                    devices: 100,
                    points: 10,
                },
                Scenario::Subscribe,
                Scenario::Scale,
            ],
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(3),
            poll: Duration::from_secs(1),
            decimals: Some(2),
            scale_devices: 1000,
            scale_points: 10,
            users: 1000,
            in_flight: 2000,
        }
    }
}

pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (e.g. 500ms, 10s, 2m)");
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn pair(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected DEVICESxPOINTS, e.g. 200x5, not {s:?}");
    let (d, p) = s.split_once('x').ok_or_else(bad)?;
    let d: usize = d.parse().map_err(|_| bad())?;
    let p: usize = p.parse().map_err(|_| bad())?;
    if d == 0 || p == 0 || d > 9999 {
        return Err(bad());
    }
    Ok((d, p))
}

impl Args {
    /// Parses the arguments; `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>, String> {
        let mut a = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            match key.as_str() {
                // What `cargo bench` passes to every bench binary.
                "--bench" => {}
                "-h" | "--help" => return Ok(None),
                "--servers" => {
                    a.servers = value()?
                        .split(',')
                        .map(|s| match s {
                            "prosody" => Ok(ServerKind::Prosody),
                            "ejabberd" => Ok(ServerKind::Ejabberd),
                            _ => Err(format!("unknown server {s:?}: prosody or ejabberd")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--scenarios" => {
                    a.scenarios = value()?
                        .split(',')
                        .map(|s| match s {
                            "scale" => Ok(Scenario::Scale),
                            "subscribe" => Ok(Scenario::Subscribe),
                            _ => pair(s)
                                .map(|(devices, points)| Scenario::Throughput { devices, points }),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--duration" => a.duration = duration(&value()?)?,
                "--warmup" => a.warmup = duration(&value()?)?,
                "--poll" => a.poll = duration(&value()?)?,
                "--decimals" => {
                    let v = value()?;
                    a.decimals = match v.as_str() {
                        "none" => None,
                        n => Some(
                            n.parse()
                                .map_err(|_| format!("--decimals {n}: a number or none"))?,
                        ),
                    };
                }
                "--scale" => (a.scale_devices, a.scale_points) = pair(&value()?)?,
                "--users" => {
                    a.users = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--users needs a positive number")?;
                }
                "--in-flight" => {
                    a.in_flight = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--in-flight needs a positive number")?;
                }
                other => return Err(format!("unknown argument {other:?}; see --help")),
            }
        }
        if a.servers.is_empty() || a.scenarios.is_empty() {
            return Err("no server or no scenario".into());
        }
        Ok(Some(a))
    }

    /// Whether the many-user scenarios run.
    pub fn needs_users(&self) -> bool {
        self.scenarios
            .iter()
            .any(|s| matches!(s, Scenario::Scale | Scenario::Subscribe))
    }
}
