//! Who may do what, with real host users and real clients (curl run as each user through
//! setpriv): an operator (member of the admin group), the owner of one slice, and a user with
//! no rights — on both sockets. Needs root (creates users, slices).
mod daemon_support;

use daemon_support::*;
use serde_json::Value;
use std::path::Path;

const WS: &[&str] = &[
    "-H",
    "Connection: Upgrade",
    "-H",
    "Upgrade: websocket",
    "-H",
    "Sec-WebSocket-Version: 13",
    "-H",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// Status of a WebSocket upgrade attempt as `user` (101 = allowed).
fn upgrade_as(user: Option<&User>, socket: &Path, path: &str) -> u16 {
    let mut c = match user {
        Some(u) => {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .arg("--init-groups")
                .arg("curl");
            c
        }
        None => std::process::Command::new("curl"),
    };
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "3",
        "-w",
        "%{http_code}",
        "--unix-socket",
    ])
    .arg(socket)
    .args(WS);
    c.arg(format!("http://localhost{path}"));
    let out = c.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// (who, socket, method, path, body, expected status)
type Case<'a> = (&'a User, &'a Path, &'a str, &'a str, Option<&'a str>, u16);

#[test]
fn authorization_matrix_with_three_host_users() {
    let pid = std::process::id();
    let mut users = Users::new();
    let admin_group = format!("vst{pid}adm");
    users.group(&admin_group);
    let op = users.user(&format!("vst{pid}a"), &[&admin_group]);
    let owner = users.user(&format!("vst{pid}b"), &[]);
    let nobody = users.user(&format!("vst{pid}c"), &[]);
    let d = TestDaemon::start_with(Options {
        admin_group: Some(admin_group.clone()),
        ..Default::default()
    });

    // The operators' socket is root:<admin group> 0660.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(
        meta.gid(),
        nix::unistd::Group::from_name(&admin_group)
            .unwrap()
            .unwrap()
            .gid
            .as_raw()
    );
    assert_eq!(
        std::fs::metadata(&d.user_socket).unwrap().mode() & 0o777,
        0o666
    );

    let c = d.blocking();
    let mut own = sleeper("own");
    own.owners = vec![owner.name.clone()];
    c.create(&own).unwrap();
    c.create(&sleeper("other")).unwrap();

    let (admin, usock) = (d.socket.as_path(), d.user_socket.as_path());
    let exec = Some(r#"{"argv":["/bin/true"]}"#);
    let limits = Some(r#"{"pids_max":500}"#);
    let create = |n: &str| format!(r#"{{"name":"{n}"}}"#);
    let (ca, cb, cc) = (
        create("made-by-a"),
        create("made-by-b"),
        create("made-by-c"),
    );
    // (who, socket, method, path, body, expected status)
    #[rustfmt::skip]
    let matrix: Vec<Case> = vec![
        // The operator (admin group member) may do everything on the operators' socket.
        (&op, admin, "GET", "/v1/info", None, 200),
        (&op, admin, "GET", "/v1/slices", None, 200),
        (&op, admin, "GET", "/v1/slices/own", None, 200),
        (&op, admin, "GET", "/v1/slices/other", None, 200),
        (&op, admin, "POST", "/v1/slices/other/exec", exec, 200),
        (&op, admin, "GET", "/v1/slices/other/stats", None, 200),
        (&op, admin, "PATCH", "/v1/slices/other/limits", limits, 200),
        (&op, admin, "POST", "/v1/slices", Some(&ca), 201),
        (&op, admin, "POST", "/v1/slices/made-by-a/start", None, 200),
        (&op, admin, "POST", "/v1/slices/made-by-a/stop", None, 200),
        (&op, admin, "DELETE", "/v1/slices/made-by-a", None, 204),
        (&op, admin, "GET", "/v1/images", None, 200),
        (&op, admin, "GET", "/v1/audit", None, 200),
        (&op, admin, "GET", "/v1/audit/verify", None, 200),
        (&op, admin, "GET", "/metrics", None, 200),
        (&op, admin, "GET", "/v1/events?follow=false", None, 200),
        // On the owners' socket, operator routes are refused even for operators.
        (&op, usock, "POST", "/v1/slices", Some(&ca), 403),
        (&op, usock, "GET", "/v1/slices/other", None, 200),
        // The owner cannot open the operators' socket at all (curl: status 0).
        (&owner, admin, "GET", "/v1/info", None, 0),
        // The owner: inspect, stats, exec, events of their slice; nothing else.
        (&owner, usock, "GET", "/v1/info", None, 200),
        (&owner, usock, "GET", "/v1/openapi.json", None, 200),
        (&owner, usock, "GET", "/v1/slices/own", None, 200),
        (&owner, usock, "GET", "/v1/slices/own/stats", None, 200),
        (&owner, usock, "POST", "/v1/slices/own/exec", exec, 200),
        (&owner, usock, "GET", "/v1/events?slice=own&follow=false", None, 200),
        (&owner, usock, "GET", "/v1/slices/other", None, 403),
        (&owner, usock, "GET", "/v1/slices/other/stats", None, 403),
        (&owner, usock, "POST", "/v1/slices/other/exec", exec, 403),
        (&owner, usock, "GET", "/v1/events?slice=other&follow=false", None, 403),
        (&owner, usock, "GET", "/v1/slices/does-not-exist", None, 403),
        (&owner, usock, "POST", "/v1/slices", Some(&cb), 403),
        (&owner, usock, "DELETE", "/v1/slices/own", None, 403),
        (&owner, usock, "PATCH", "/v1/slices/own/limits", limits, 403),
        (&owner, usock, "POST", "/v1/slices/own/start", None, 403),
        (&owner, usock, "POST", "/v1/slices/own/stop", None, 403),
        (&owner, usock, "POST", "/v1/slices/own/restart", None, 403),
        (&owner, usock, "GET", "/v1/images", None, 403),
        (&owner, usock, "GET", "/v1/audit", None, 403),
        (&owner, usock, "GET", "/v1/audit/verify", None, 403),
        (&owner, usock, "GET", "/metrics", None, 403),
        // Everyone else: nothing but the API description.
        (&nobody, admin, "GET", "/v1/info", None, 0),
        (&nobody, usock, "GET", "/v1/info", None, 200),
        (&nobody, usock, "GET", "/v1/openapi.json", None, 200),
        (&nobody, usock, "GET", "/v1/slices/own", None, 403),
        (&nobody, usock, "GET", "/v1/slices/own/stats", None, 403),
        (&nobody, usock, "POST", "/v1/slices/own/exec", exec, 403),
        (&nobody, usock, "GET", "/v1/events?slice=own&follow=false", None, 403),
        (&nobody, usock, "POST", "/v1/slices", Some(&cc), 403),
        (&nobody, usock, "DELETE", "/v1/slices/own", None, 403),
        (&nobody, usock, "PATCH", "/v1/slices/own/limits", limits, 403),
        (&nobody, usock, "POST", "/v1/slices/own/stop", None, 403),
        (&nobody, usock, "GET", "/v1/audit", None, 403),
        (&nobody, usock, "GET", "/metrics", None, 403),
    ];
    let mut failures = Vec::new();
    for (who, sock, method, path, body, want) in &matrix {
        let (got, text) = d.curl_as(who, sock, method, path, *body);
        if got != *want {
            failures.push(format!(
                "{} {} {method} {path}: want {want}, got {got} {text}",
                who.name,
                sock.display()
            ));
        } else if got == 403 {
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            if v["code"] != "forbidden" {
                failures.push(format!(
                    "{} {method} {path}: 403 without code forbidden: {text}",
                    who.name
                ));
            }
        }
    }
    // Interactive exec (enter) is allowed to the owner and to nobody else.
    for (who, sock, path, want) in [
        (
            Some(&owner),
            usock,
            "/v1/slices/own/exec/tty?cmd=/bin/true",
            101,
        ),
        (
            Some(&owner),
            usock,
            "/v1/slices/other/exec/tty?cmd=/bin/true",
            403,
        ),
        (
            Some(&nobody),
            usock,
            "/v1/slices/own/exec/tty?cmd=/bin/true",
            403,
        ),
        (
            Some(&op),
            admin,
            "/v1/slices/other/exec/tty?cmd=/bin/true",
            101,
        ),
        (None, admin, "/v1/slices/own/exec/tty?cmd=/bin/true", 101),
    ] {
        let got = upgrade_as(who, sock, path);
        if got != want {
            failures.push(format!(
                "{:?} tty {path}: want {want}, got {got}",
                who.map(|u| &u.name)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix:\n{}",
        failures.join("\n")
    );

    // Collections are filtered for owners.
    let (_, b) = d.curl_as(&owner, usock, "GET", "/v1/slices", None);
    let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&b)
        .unwrap()
        .iter()
        .map(|s| s["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["own"]);
    let (_, b) = d.curl_as(&nobody, usock, "GET", "/v1/slices", None);
    assert_eq!(b.trim(), "[]");
    let (_, b) = d.curl_as(
        &owner,
        usock,
        "GET",
        "/v1/events?since=0&follow=false",
        None,
    );
    assert!(
        !b.is_empty() && b.lines().all(|l| l.contains("\"slice\":\"own\"")),
        "owner sees only own events: {b}"
    );
    let (_, b) = d.curl_as(&owner, usock, "GET", "/v1/info", None);
    let info: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (
            info["caller"]["user"].as_str(),
            info["caller"]["operator"].as_bool()
        ),
        (Some(owner.name.as_str()), Some(false))
    );
    let (_, b) = d.curl_as(&op, admin, "GET", "/v1/info", None);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["caller"]["operator"],
        true
    );

    // Refused mutations and execs are in the audit log, with the caller.
    let recs = c.audit_show(&Default::default()).unwrap();
    let denied: Vec<(u32, String, u16)> = recs
        .iter()
        .filter_map(|r| match &r.entry {
            vslice::audit::Entry::Control(c) if !c.result.ok => {
                Some((c.caller.uid, c.action.clone(), c.result.status))
            }
            _ => None,
        })
        .collect();
    assert!(
        denied.contains(&(owner.uid, "exec".into(), 403)),
        "{denied:?}"
    );
    assert!(
        denied.contains(&(nobody.uid, "exec".into(), 403)),
        "{denied:?}"
    );
    let by_b_ok = recs.iter().any(|r| matches!(&r.entry, vslice::audit::Entry::Control(c) if c.caller.uid == owner.uid && c.action == "exec" && c.result.ok && c.caller.user.as_deref() == Some(owner.name.as_str())));
    assert!(by_b_ok, "the owner's exec is recorded under their name");
    let by_a = recs.iter().any(|r| matches!(&r.entry, vslice::audit::Entry::Control(c) if c.caller.uid == op.uid && c.action == "create" && c.result.status == 201));
    assert!(by_a, "the operator's create is recorded");
    assert!(c.audit_verify().unwrap().ok);
}
