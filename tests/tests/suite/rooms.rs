//! The Multi-User Chat fixtures themselves (no gateway): the MUC service
//! of each server ([`Options::muc`]) and the room helpers of
//! `fieldbridge_e2e::muc`, which the alarm tests build on. Two real clients
//! meet in a room; the gateway's component may create one, as
//! `deploy/*/alerts-room.*` allow.

use std::time::Duration;

use fieldbridge_e2e::client::XmppUser;
use fieldbridge_e2e::component;
use fieldbridge_e2e::muc::{self, delay, status_codes};
use fieldbridge_e2e::server::{COMPONENT, MUC, Options, Server, ServerKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

async fn server(kind: ServerKind) -> Server {
    let server = Server::start_with(
        kind,
        &Options {
            muc: true,
            ..Options::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    for u in ["alice", "bob"] {
        server.register(u, "pw").expect("registered");
    }
    server
}

async fn two_clients_meet_in_a_room(kind: ServerKind) {
    let server = server(kind).await;
    let room = format!("plant@{MUC}");
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();

    let joined = muc::join(&mut alice, &room, "alice").await.unwrap();
    assert!(joined.created, "a new room: {:?}", joined.presence);
    let joined = muc::join(&mut bob, &room, "bob").await.unwrap();
    assert!(!joined.created, "the room existed: {:?}", joined.presence);
    // Each sees the other.
    muc::expect_occupant(&mut alice, &room, "bob", None)
        .await
        .unwrap();
    muc::expect_occupant(&mut bob, &room, "alice", None)
        .await
        .unwrap();

    muc::say(&mut alice, &room, "boiler at 95").await.unwrap();
    let heard = muc::expect_groupchat(&mut bob, &room, Some("alice"), "alice's line", WAIT, |b| {
        b == "boiler at 95"
    })
    .await
    .unwrap();
    assert_eq!(delay(&heard), None, "said live, not from history");
    muc::say(&mut bob, &room, "on my way").await.unwrap();
    muc::expect_groupchat(&mut alice, &room, Some("bob"), "bob's line", WAIT, |b| {
        b == "on my way"
    })
    .await
    .unwrap();

    // Leaving and coming back with history: alice's line again, stamped.
    muc::leave(&mut bob, &room, "bob").await.unwrap();
    muc::join_with_history(&mut bob, &room, "bob", 10)
        .await
        .unwrap();
    let old = muc::expect_groupchat(&mut bob, &room, Some("alice"), "history", WAIT, |b| {
        b == "boiler at 95"
    })
    .await
    .unwrap();
    let (stamp, _) = delay(&old).unwrap_or_else(|| panic!("history without delay: {old:?}"));
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{stamp}");

    // The creator owns the room: a kick says 307 to the one kicked.
    let answer = muc::kick(&mut alice, &room, "bob", "test").await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
    let out = muc::expect_occupant(&mut bob, &room, "bob", Some("unavailable"))
        .await
        .unwrap();
    assert!(status_codes(&out).contains(&307), "{out:?}");

    // Members-only: bob, no member, is refused now.
    muc::configure(&mut alice, &room, &[("muc#roomconfig_membersonly", "1")])
        .await
        .unwrap();
    let features = muc::features(&mut alice, &room).await.unwrap().unwrap();
    assert!(
        features.iter().any(|f| f == "muc_membersonly"),
        "{features:?}"
    );
    assert_eq!(
        muc::join_refused(&mut bob, &room, "bob").await.unwrap(),
        "registration-required"
    );

    // Destroyed, it is gone.
    muc::destroy(&mut alice, &room).await.unwrap();
    assert_eq!(
        muc::features(&mut bob, &room).await.unwrap(),
        Err("item-not-found".to_owned())
    );
    alice.close().await;
    bob.close().await;
}

/// The gateway joins its room from `<component>/alerts`: the service lets
/// the component create it (status 201), as deploy/ says it must.
async fn the_component_may_create_a_room(kind: ServerKind) {
    let server = server(kind).await;
    let room = format!("alerts@{MUC}");
    let mut stream = component::connect(server.component_port(), COMPONENT, server.secret(), WAIT)
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "<presence from='{COMPONENT}/alerts' to='{room}/gw'>\
                 <x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x></presence>"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(WAIT, async {
        while !(seen.contains("code='110'")
            || seen.contains("code=\"110\"")
            || seen.contains("type='error'")
            || seen.contains("type=\"error\""))
        {
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the server closed the stream");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(())
    })
    .await;
    assert!(
        matches!(answered, Ok(Ok(()))),
        "no self-presence for {room}/gw ({answered:?}); the server sent:\n{seen}\n{}",
        server.log()
    );
    assert!(
        !seen.contains("type='error'") && !seen.contains("type=\"error\""),
        "the component may not create {room}:\n{seen}"
    );
    assert!(
        seen.contains("code='201'") || seen.contains("code=\"201\""),
        "created by the component:\n{seen}"
    );
}

fieldbridge_e2e::on_every_server!(two_clients_meet_in_a_room, the_component_may_create_a_room);
