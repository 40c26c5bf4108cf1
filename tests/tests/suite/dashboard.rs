//! End-to-end: the web dashboard in a real browser (Debian's chromium,
//! headless, driven by `dashboard/test/drive.mjs`), served by the real
//! gateway (`dashboard.listen`), logged in over a real Prosody's and
//! ejabberd's WebSocket with real accounts: what a reader, a controller and
//! an outsider see and may do.

use std::time::Duration;

use fieldbridge_e2e::browser::{built_dashboard, drive};
use fieldbridge_e2e::client::XmppUser;
use fieldbridge_e2e::free_port;
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::http::{self, Answer};
use fieldbridge_e2e::pubsub::{get_items, items_of, seqnr};
use fieldbridge_e2e::server::{COMPONENT, Options, Server, ServerKind};
use serde_json::{Value, json};

/// A boiler whose temperature changes at every 100 ms poll (so items pile
/// up in the history and the page sees it move), with a writable set-point
/// of one decimal and limits; a meter; a sensor offline 2 s of every 4.
const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 100ms\n    period: 20s\n    points:\n      \
temperature: { signal: sine, range: [50, 70], unit: \"°C\", label: Boiler temperature }\n      \
setpoint: { signal: constant, value: 65.0, unit: \"°C\", decimals: 1, writable: true, min: 30, max: 85, label: Target temperature }\n  \
meter:\n    name: Cellar meter\n    connection: sim\n    poll: 100ms\n    points:\n      \
power: { signal: random_walk, range: [100, 2000], unit: W }\n  \
flaky:\n    name: Flaky sensor\n    connection: sim\n    poll: 100ms\n    outage: { every: 4s, duration: 2s }\n    points:\n      \
level: { signal: sine, range: [0, 100], unit: \"%\" }\n";

/// Items the boiler's history holds before a browser opens the page:
/// more than the live notifications of the page's first second can be.
const HISTORY: u64 = 30;

struct Site {
    server: Server,
    _gateway: Gateway,
    url: String,
}

/// The server with WebSocket, the accounts (`reader`, `control`,
/// `outsider`, each with password `pw`), the gateway serving the page;
/// returns once the boiler's history holds [`HISTORY`] items.
async fn site(kind: ServerKind) -> Site {
    site_with(kind, DEVICES, "").await
}

/// [`site`] with these devices and more top-level sections of gateway.yaml.
async fn site_with(kind: ServerKind, devices: &str, sections: &str) -> Site {
    let files = built_dashboard();
    let options = Options {
        web: true,
        ..Options::default()
    };
    let server = Server::start_with(kind, &options)
        .await
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    for u in ["reader", "control", "outsider"] {
        server.register(u, "pw").expect("registered");
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let files = files.display().to_string();
    let websocket = server.websocket_url().expect("a WebSocket endpoint");
    let bosh = server.bosh_url().expect("a BOSH endpoint");
    let gateway = Gateway::started_with_sections(
        &server,
        &Setup {
            read: &["reader@localhost", "control@localhost"],
            control: &["control@localhost"],
            connections: "  sim: { simulator: {} }\n",
            devices,
        },
        sections,
        &[
            ("FIELDBRIDGE__DASHBOARD__LISTEN", &listen),
            ("FIELDBRIDGE__DASHBOARD__FILES", &files),
            ("FIELDBRIDGE__DASHBOARD__WEBSOCKET", &websocket),
            ("FIELDBRIDGE__DASHBOARD__BOSH", &bosh),
        ],
    )
    .await;
    // The history the charts start from.
    let mut reader = XmppUser::connect(server.c2s_port(), "reader", "pw")
        .await
        .expect("reader logs in");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get_items(&mut reader, "boiler", &[("max_items", "1")])
            .await
            .expect("items");
        if items_of(&answer)
            .first()
            .is_some_and(|i| seqnr(i) >= HISTORY)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the boiler has not published {HISTORY} items in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.close().await;
    Site {
        server,
        _gateway: gateway,
        url: format!("http://{listen}/"),
    }
}

/// Runs the driver as `user` (password `pw`) with `extra` keys.
fn as_user(site: &Site, user: &str, extra: Value) -> Value {
    let mut args = json!({
        "url": site.url,
        "jid": format!("{user}@localhost"),
        "password": "pw",
    });
    if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    let report = drive(&args).unwrap_or_else(|e| panic!("{e}\n{}", site.server.log()));
    assert_eq!(report["errors"], json!([]), "{report:#}");
    report
}

fn device<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == id))
        .unwrap_or_else(|| panic!("no device {id} in {report:#}"))
}

#[tokio::test]
async fn prosody_reader_sees_devices_live_values_and_charts_but_may_not_write() {
    let site = site(ServerKind::Prosody).await;
    let shot = tempfile::Builder::new()
        .suffix(".png")
        .tempfile()
        .expect("a file for the screenshot");
    let report = as_user(
        &site,
        "reader",
        json!({
            "expect_devices": true,
            "watch": { "device": "boiler", "point": "temperature" },
            "forge": { "device": "boiler", "point": "setpoint", "value": "40" },
            "wait_state": { "device": "flaky", "contains": "offline" },
            "reload": true,
            "screenshot": shot.path(),
        }),
    );
    // The WebSocket URL came from the gateway's config.json, and the page
    // went through it.
    assert_eq!(
        report["prefilled"],
        json!(site.server.websocket_url()),
        "{report:#}"
    );
    assert_eq!(report["connected_url"], report["prefilled"], "{report:#}");
    let names: Vec<&str> = report["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Boiler room", "Flaky sensor", "Cellar meter"],
        "{report:#}"
    );
    // Offline in words, with the reason from its presence.
    assert_eq!(
        report["state"], "✖ offline: scheduled outage (simulated) for 2s",
        "{report:#}"
    );
    let boiler = device(&report, "boiler");
    assert!(
        boiler["state"].as_str().unwrap().contains("online"),
        "{report:#}"
    );
    assert_eq!(boiler["labels"]["temperature"], "Boiler temperature");
    // Rounded as the chat shows it: the point's one decimal.
    assert_eq!(boiler["values"]["setpoint"], "65.0 °C", "{report:#}");
    assert!(
        boiler["values"]["temperature"]
            .as_str()
            .unwrap()
            .ends_with(" °C"),
        "{report:#}"
    );
    // A chart per numeric point, the boiler's from its history.
    let history = boiler["charts"]["temperature"].as_u64().unwrap_or(0);
    assert!(history >= HISTORY, "{history} points: {report:#}");
    assert!(device(&report, "meter")["charts"]["power"].as_u64() > Some(0));
    // Live: the value changed and the chart grew.
    let live = &report["live"];
    assert_ne!(live["before"], live["after"], "{report:#}");
    assert!(
        live["chart_after"].as_u64() > live["chart_before"].as_u64(),
        "{report:#}"
    );
    // No control for a reader, and a write sent anyway through the page's
    // own connection is refused by the gateway.
    assert_eq!(boiler["set_form"], false, "{report:#}");
    // A wide screen puts cards side by side.
    assert!(report["layout"]["columns"].as_u64() > Some(1), "{report:#}");
    assert_eq!(report["forge"]["ok"], false, "{report:#}");
    assert_eq!(report["forge"]["condition"], "forbidden", "{report:#}");
    // "Remember" was not ticked: nothing of the login is kept.
    let kept = &report["after_reload"];
    assert_eq!(kept["password"], "", "{report:#}");
    assert_eq!(kept["jid"], "", "{report:#}");
    assert!(
        !kept["storage"].as_str().unwrap().contains("pw"),
        "{report:#}"
    );
    // The screenshot shows a page, not a blank.
    let s = &report["screenshot"];
    assert!(s["colours"].as_u64() > Some(200), "{report:#}");
    assert!(s["not_background"].as_f64() > Some(0.1), "{report:#}");
    let png = std::fs::read(shot.path()).expect("the screenshot was written");
    assert_eq!(&png[1..4], b"PNG");
}

/// The "Active alarms" box, filled from the gateway's `alerts` node: a
/// pressure that is always above its limit is raised from the start, so
/// the page finds it among the node's items or in a notification, whichever
/// comes first (needs issue 14's alarms).
#[tokio::test]
async fn prosody_the_alarms_box_shows_a_raised_alarm_from_the_alerts_node() {
    let devices = format!(
        "{DEVICES}  still:\n    name: Boiler house\n    connection: sim\n    poll: 100ms\n    points:\n      \
         pressure: {{ signal: constant, value: 4.5, unit: bar, decimals: 1, label: Pressure, \
         alarm: {{ above: 3, severity: critical }} }}\n"
    );
    let site = site_with(
        ServerKind::Prosody,
        &devices,
        "alerts:\n  to: [\"reader@localhost\"]\n",
    )
    .await;
    let report = as_user(
        &site,
        "reader",
        json!({ "wait_alarm": { "contains": "Pressure" } }),
    );
    assert_eq!(report["errors"], json!([]), "{report:#}");
    let alarms = report["alarms"].as_array().expect("alarms");
    assert_eq!(alarms.len(), 1, "{report:#}");
    assert_eq!(alarms[0]["severity"], "🔴 CRITICAL", "{report:#}");
    assert!(
        alarms[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Boiler house: Pressure is 4.5 bar, above 3 bar"),
        "{report:#}"
    );
    assert!(
        alarms[0]["since"]
            .as_str()
            .unwrap()
            .starts_with(" · since "),
        "{report:#}"
    );
    assert_eq!(report["alarms_note"], Value::Null, "{report:#}");
    // The alerts node is no device.
    let ids: Vec<&str> = report["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(!ids.contains(&"alerts"), "{report:#}");
}

#[tokio::test]
async fn prosody_controller_sets_a_point_and_sees_the_new_value_come_back() {
    let site = site(ServerKind::Prosody).await;
    let report = as_user(
        &site,
        "control",
        json!({
            "expect_devices": true,
            "set": { "device": "boiler", "point": "setpoint", "value": "61.5", "shown": "61.5 °C" },
            "remember": true,
            "reload": true,
        }),
    );
    // "Remember" ticked: the form is filled again after a reload.
    let kept = &report["after_reload"];
    assert_eq!(kept["jid"], "control@localhost", "{report:#}");
    assert_eq!(kept["password"], "pw", "{report:#}");
    assert_eq!(kept["remember"], true, "{report:#}");
    assert_eq!(device(&report, "boiler")["set_form"], true, "{report:#}");
    // The meter has nothing writable: no form.
    assert_eq!(device(&report, "meter")["set_form"], false, "{report:#}");
    let set = &report["set"];
    assert_eq!(set["ok"], true, "{report:#}");
    assert_eq!(
        set["text"], "Target temperature set to 61.5 °C.",
        "{report:#}"
    );
    // From the next item the gateway published, not from the form.
    assert_eq!(set["value_after"], "61.5 °C", "{report:#}");

    // Outside min/max: the gateway's refusal, shown in words.
    let report = as_user(
        &site,
        "control",
        json!({
            "expect_devices": true,
            "set": { "device": "boiler", "point": "setpoint", "value": "1000", "shown": "61.5 °C" },
        }),
    );
    let set = &report["set"];
    assert_eq!(set["ok"], false, "{report:#}");
    assert!(
        set["text"].as_str().unwrap().contains("above the maximum"),
        "{report:#}"
    );
    assert_eq!(set["value_after"], "61.5 °C", "{report:#}");
}

#[tokio::test]
async fn prosody_outsider_sees_no_device_and_bosh_stands_in_for_the_websocket() {
    let site = site(ServerKind::Prosody).await;
    let report = as_user(&site, "outsider", json!({}));
    assert_eq!(report["logged_in"], true, "{report:#}");
    assert_eq!(report["devices"], json!([]), "{report:#}");
    assert_eq!(
        report["status"],
        format!("This account may not read the devices of {COMPONENT}."),
        "{report:#}"
    );
    // No WebSocket to be had: the page goes through BOSH instead.
    let closed = format!("ws://127.0.0.1:{}/xmpp-websocket", free_port());
    let report = as_user(
        &site,
        "reader",
        json!({ "websocket": closed, "expect_devices": true }),
    );
    assert_eq!(
        report["connected_url"],
        json!(site.server.bosh_url()),
        "{report:#}\n{}",
        site.server.log()
    );
    assert_eq!(
        device(&report, "boiler")["name"],
        "Boiler room",
        "{report:#}"
    );
    // A wrong password is said so, not shown as an empty board.
    let report = drive(&json!({
        "url": site.url, "jid": "reader@localhost", "password": "wrong",
    }))
    .expect("the driver runs");
    assert_eq!(report["logged_in"], Value::Null, "{report:#}");
    assert_eq!(
        report["login_error"], "Wrong address or password.",
        "{report:#}"
    );
}

#[tokio::test]
async fn ejabberd_reader_logs_in_over_its_websocket_and_sees_a_live_value() {
    let site = site(ServerKind::Ejabberd).await;
    // On a phone's screen.
    let report = as_user(
        &site,
        "reader",
        json!({
            "expect_devices": true,
            "watch": { "device": "boiler", "point": "temperature" },
            "width": 390,
            "height": 844,
        }),
    );
    // One column, nothing wider than the screen.
    let layout = &report["layout"];
    assert_eq!(layout["columns"], 1, "{report:#}");
    assert!(
        layout["scroll_width"].as_u64() <= layout["viewport"].as_u64(),
        "{report:#}"
    );
    assert_eq!(report["prefilled"], json!(site.server.websocket_url()));
    assert_eq!(report["connected_url"], report["prefilled"], "{report:#}");
    assert_eq!(device(&report, "boiler")["name"], "Boiler room");
    let live = &report["live"];
    assert_ne!(live["before"], live["after"], "{report:#}");
}

/// The page served by the XMPP server itself, as `deploy/` sets it up, at
/// `/dashboard/` beside its WebSocket; the gateway serves nothing. The page
/// is opened on `host` (ejabberd's file server answers only for the name of
/// one of its hosts) with `query` (ejabberd's WebSocket is not at the path
/// the page guesses; Prosody's is found on the page's own origin).
async fn served_by_the_xmpp_server(
    kind: ServerKind,
    host: &str,
    query: impl Fn(&Server) -> String,
) {
    let options = Options {
        web: true,
        web_files: Some(built_dashboard()),
        ..Options::default()
    };
    let server = Server::start_with(kind, &options)
        .await
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    server.register("reader", "pw").expect("registered");
    let _gateway = Gateway::start_with(
        &server,
        &Setup {
            read: &["reader@localhost"],
            control: &[],
            connections: "  sim: { simulator: {} }\n",
            devices: DEVICES,
        },
    )
    .await
    .expect("the gateway starts");
    let http = server.http_port().expect("an HTTP port");
    let url = format!("http://{host}:{http}/dashboard/{}", query(&server));
    let report = drive(&json!({
        "url": url,
        "jid": "reader@localhost",
        "password": "pw",
        "component": COMPONENT,
        "expect_devices": true,
        "watch": { "device": "boiler", "point": "temperature" },
    }))
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(report["errors"], json!([]), "{report:#}\n{}", server.log());
    assert_eq!(
        report["connected_url"],
        json!(server.websocket_url()),
        "{report:#}"
    );
    assert_eq!(device(&report, "boiler")["name"], "Boiler room");
    let live = &report["live"];
    assert_ne!(live["before"], live["after"], "{report:#}");
}

#[tokio::test]
async fn prosody_serves_the_page_itself_and_the_page_finds_its_websocket() {
    served_by_the_xmpp_server(ServerKind::Prosody, "127.0.0.1", |_| String::new()).await;
}

#[tokio::test]
async fn ejabberd_serves_the_page_itself_told_its_websocket_by_the_query_string() {
    served_by_the_xmpp_server(ServerKind::Ejabberd, "localhost", |s| {
        format!("?websocket={}", s.websocket_url().unwrap_or_default())
    })
    .await;
}

/// A GET to the dashboard listener.
async fn get(port: u16, path: &str) -> Answer {
    http::get(port, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn the_listener_serves_the_page_and_nothing_outside_it() {
    let files = built_dashboard();
    let server = Server::start(ServerKind::Prosody)
        .await
        .expect("Prosody starts");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _gateway = Gateway::start_with_env(
        &server,
        &Setup {
            read: &["localhost"],
            control: &[],
            connections: "  sim: { simulator: {} }\n",
            devices: DEVICES,
        },
        &[
            ("FIELDBRIDGE__DASHBOARD__LISTEN", &listen),
            (
                "FIELDBRIDGE__DASHBOARD__FILES",
                &files.display().to_string(),
            ),
            ("FIELDBRIDGE__DASHBOARD__WEBSOCKET", "ws://127.0.0.1:1/ws"),
        ],
    )
    .await
    .expect("the gateway starts");
    let page = get(port, "/").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.head
            .to_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{page:?}"
    );
    let js = get(port, "/app.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.head
            .to_lowercase()
            .contains("content-type: text/javascript")
    );
    let config = get(port, "/config.json").await;
    assert_eq!(config.status, 200);
    let config: Value = serde_json::from_str(&config.body).expect("config.json is JSON");
    assert_eq!(
        config,
        json!({ "component": COMPONENT, "websocket": "ws://127.0.0.1:1/ws", "bosh": null })
    );
    // dashboard/package.json is right above the files: no way up to it.
    for path in [
        "/../package.json",
        "/%2e%2e/package.json",
        "/..%2fpackage.json",
        "/.%2e/package.json",
        "/nothing.js",
    ] {
        assert_eq!(get(port, path).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn prosody_restart_the_page_says_so_and_logs_in_again_by_itself() {
    let mut site = site(ServerKind::Prosody).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ready = dir.path().join("ready");
    let args = json!({
        "url": site.url,
        "jid": "reader@localhost",
        "password": "pw",
        "expect_devices": true,
        "reconnect": { "ready_file": ready, "device": "boiler", "point": "temperature" },
        "wait_ms": 45000,
    });
    let driver = std::thread::spawn(move || drive(&args));
    // Once the page shows the board: the server goes away and comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            !driver.is_finished() && tokio::time::Instant::now() < deadline,
            "the page did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    site.server.stop().await.expect("Prosody stops");
    site.server.restart().await.expect("Prosody starts again");
    let report = driver
        .join()
        .expect("the driver thread")
        .unwrap_or_else(|e| panic!("{e}\n{}", site.server.log()));
    assert_eq!(
        report["errors"],
        json!([]),
        "{report:#}\n{}",
        site.server.log()
    );
    let r = &report["reconnect"];
    assert!(
        r["lost"]
            .as_str()
            .unwrap()
            .starts_with("Disconnected from the XMPP server; connecting again in "),
        "{report:#}"
    );
    // While it was gone, no device claimed to be online.
    for state in r["states_while_lost"].as_array().unwrap() {
        assert!(state.as_str().unwrap().contains("unknown"), "{report:#}");
    }
    assert_eq!(r["status"], "3 devices on gw.localhost.", "{report:#}");
    assert_ne!(r["before"], r["after"], "{report:#}");
}
