//! The API's contract end to end: a real `vsliced` is called on EVERY operation of its own
//! `/v1/openapi.json`, with requests that are first validated against the document (bodies
//! against the request schema, query parameters against their declarations), and every reply
//! is validated against the schema the document gives for its status — strictly: a member the
//! document does not declare fails. Requests built from the schemas alone (as a generated
//! client would build them) must be understood by the daemon. Needs root (it creates a slice).
mod daemon_support;

use daemon_support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use vslice::api::openapi::{operations, sample_instance, standalone_schema};

const SLICE: &str = "contract";

struct Contract {
    doc: Value,
    covered: BTreeSet<(String, String)>,
    /// The next request is invalid on purpose: do not validate its body and query.
    invalid: bool,
}

/// Validate `instance` against `schema` (in the document); panic with every error.
fn validate(doc: &Value, schema: &Value, instance: &Value, strict: bool, what: &str) {
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&standalone_schema(doc, schema, strict))
        .unwrap_or_else(|e| panic!("{what}: bad schema {schema}: {e}"));
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    let mut shown = instance.to_string();
    shown.truncate(3000);
    assert!(
        errors.is_empty(),
        "{what}: {shown}\ndoes not match {schema}:\n{errors:#?}"
    );
}

/// A query value (text) as the JSON its parameter schema describes.
fn typed(schema: &Value, value: &str) -> Value {
    let ty = match &schema["type"] {
        Value::Array(t) => t.iter().find(|t| *t != "null").cloned().unwrap_or_default(),
        t => t.clone(),
    };
    match ty.as_str() {
        Some("integer") => json!(value.parse::<i64>().expect("integer parameter")),
        Some("number") => json!(value.parse::<f64>().expect("number parameter")),
        Some("boolean") => json!(value.parse::<bool>().expect("boolean parameter")),
        _ => json!(value),
    }
}

struct Reply {
    status: u16,
    body: Value,
}

impl Contract {
    fn op(&self, method: &str, template: &str) -> Value {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        op.clone()
    }

    /// Check `query` against the operation's declared query parameters and build `?…`.
    fn query(&self, op: &Value, what: &str, query: &[(&str, &str)], check: bool) -> String {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            let p = params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == *k)
                .unwrap_or_else(|| panic!("{what}: query parameter {k} is not documented"));
            let schema = &p["schema"];
            let instance = if schema["type"] == "array" {
                json!([typed(&schema["items"], v)])
            } else {
                typed(schema, v)
            };
            if check {
                validate(&self.doc, schema, &instance, false, &format!("{what} ?{k}"));
            }
            q.append_pair(k, v);
        }
        let s = q.finish();
        if s.is_empty() {
            s
        } else {
            format!("?{s}")
        }
    }

    /// Call `method template` (with `{name}` = `name`) and validate the reply against the
    /// document; `expect` is the status the scenario expects (None: any documented one).
    fn call(
        &mut self,
        d: &TestDaemon,
        method: &str,
        template: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        expect: Option<u16>,
    ) -> Reply {
        let what = format!("{method} {template}");
        let op = self.op(method, template);
        let check = !std::mem::take(&mut self.invalid);
        if let Some(b) = body.filter(|_| check) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{what}: no JSON request body documented"
            );
            validate(&self.doc, schema, b, true, &format!("{what} request"));
        }
        let path = format!(
            "{}{}",
            template
                .replace("{name}", SLICE)
                .replace("{fingerprint}", "SHA256%3Anone"),
            self.query(&op, &what, query, check)
        );
        let text = body.map(Value::to_string);
        let (status, out) = d.curl(method, &path, text.as_deref());
        if let Some(e) = expect {
            assert_eq!(status, e, "{method} {path}: {out}");
        }
        let reply = &op["responses"][status.to_string()];
        assert!(
            reply.is_object(),
            "{method} {path}: status {status} is not documented: {out}"
        );
        let label = format!("{what} → {status}");
        let parsed = match reply["content"].as_object() {
            None => {
                assert!(out.is_empty(), "{label}: no body documented, got {out}");
                Value::Null
            }
            Some(content) => {
                let (kind, media) = content.iter().next().expect("one media type");
                let schema = &media["schema"];
                match kind.as_str() {
                    "application/json" => {
                        let v: Value = serde_json::from_str(&out)
                            .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {out}"));
                        validate(&self.doc, schema, &v, true, &label);
                        v
                    }
                    "application/x-ndjson" => {
                        let mut lines = Vec::new();
                        for l in out.lines().filter(|l| !l.trim().is_empty()) {
                            let v: Value = serde_json::from_str(l)
                                .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {l}"));
                            validate(&self.doc, schema, &v, true, &label);
                            lines.push(v);
                        }
                        Value::Array(lines)
                    }
                    _ => {
                        let v = json!(out);
                        validate(&self.doc, schema, &v, true, &label);
                        v
                    }
                }
            }
        };
        self.covered
            .insert((method.to_string(), template.to_string()));
        Reply {
            status,
            body: parsed,
        }
    }

    /// Send the request body a client generator would build from the schema alone. The
    /// daemon must understand it: whatever it answers is documented, and a refusal is about
    /// a value (validation), never about the body's shape (`request body: …`).
    fn generated(&mut self, d: &TestDaemon, method: &str, template: &str) {
        let op = self.op(method, template);
        let schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
        let body = sample_instance(&self.doc, &schema, 0);
        let r = self.call(d, method, template, &[], Some(&body), None);
        if r.status == 400 {
            let msg = r.body["message"].as_str().unwrap_or_default();
            assert!(
                !msg.starts_with("request body"),
                "{method} {template}: the daemon does not understand the documented body {body}: {msg}"
            );
        }
    }
}

fn full_create_request() -> Value {
    json!({
        "name": SLICE,
        "image": "busybox",
        "policy": "default",
        "limits": {
            "cpu_weight": 200, "cpu_max": 1.0, "cpuset": "0",
            "memory_max": 268435456, "swap_max": 0, "pids_max": 256
        },
        "owners": ["root"],
        "autostart": false,
        "init": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        "net": {
            "mode": "none",
            "ports": [],
            "egress_rate": 10000000, "egress_burst": 16000,
            "ingress_rate": 20000000, "ingress_burst": 32000,
            "weight": 2,
            "budget": { "max_bytes": 1073741824, "thresh_bytes": 536870912 },
            "allow": { "slices": ["*"], "host_ports": [{ "port": 53, "proto": "udp" }] }
        },
        "start": true
    })
}

/// The tty WebSocket: the upgrade is documented (101), the frames are the documented
/// `Resize` and `TtyExit` bodies.
fn tty_session(c: &mut Contract, d: &TestDaemon) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let template = "/v1/slices/{name}/exec/tty";
    let op = c.op("GET", template);
    let query = c.query(
        &op,
        "GET tty",
        &[
            ("cmd", "/bin/sh"),
            ("cmd", "-c"),
            ("cmd", "read go; echo x=$X; pwd; exit 3"),
            ("env", "X=42"),
            ("cwd", "/tmp"),
            ("cols", "100"),
            ("rows", "30"),
        ],
        true,
    );
    let url = format!("ws://localhost{}{query}", template.replace("{name}", SLICE));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, output, exit) = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("WebSocket upgrade");
        let resize = json!({ "cols": 120, "rows": 40 });
        validate(
            &c.doc,
            &json!({"$ref": "#/components/schemas/Resize"}),
            &resize,
            true,
            "Resize",
        );
        // The command waits for a line, so the frames cannot race its exit.
        ws.send(Message::text(resize.to_string())).await.unwrap();
        ws.send(Message::binary(b"go\n".to_vec())).await.unwrap();
        let mut output = Vec::new();
        let mut exit = None;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, ws.next()).await {
            match m {
                Ok(Message::Binary(b)) => output.extend_from_slice(&b),
                Ok(Message::Text(t)) => {
                    exit = Some(serde_json::from_str::<Value>(t.as_str()).unwrap())
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (
            resp.status().as_u16(),
            String::from_utf8_lossy(&output).into_owned(),
            exit,
        )
    });
    assert!(
        op["responses"][status.to_string()].is_object(),
        "{status} not documented"
    );
    assert!(
        output.contains("x=42") && output.contains("/tmp"),
        "{output:?}"
    );
    let exit = exit.expect("a TtyExit text frame");
    validate(
        &c.doc,
        &json!({"$ref": "#/components/schemas/TtyExit"}),
        &exit,
        true,
        "TtyExit",
    );
    assert_eq!(exit["exit_code"], 3);
    c.covered.insert(("GET".into(), template.into()));
    // Without the upgrade: a documented error.
    c.call(d, "GET", template, &[], None, Some(400));
}

#[test]
fn every_operation_answers_as_documented() {
    let d = TestDaemon::start();
    let (s, text) = d.curl("GET", "/v1/openapi.json", None);
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, vslice::api::openapi::document(), "served = generated");
    let mut c = Contract {
        doc,
        covered: BTreeSet::new(),
        invalid: false,
    };

    c.call(&d, "GET", "/v1/info", &[], None, Some(200));
    c.call(&d, "GET", "/v1/openapi.json", &[], None, Some(200));
    let images = c.call(
        &d,
        "GET",
        "/v1/images",
        &[("size", "true")],
        None,
        Some(200),
    );
    assert!(images
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "busybox"));
    c.call(&d, "GET", "/v1/slices", &[], None, Some(200));

    // A create request with every member set.
    let created = c.call(
        &d,
        "POST",
        "/v1/slices",
        &[],
        Some(&full_create_request()),
        Some(201),
    );
    assert_eq!(created.body["status"], "running", "{}", created.body);
    assert_eq!(created.body["spec"]["net"]["egress_rate"], 10000000);
    c.call(
        &d,
        "POST",
        "/v1/slices",
        &[],
        Some(&full_create_request()),
        Some(409),
    );
    c.invalid = true;
    let typo = c.call(
        &d,
        "POST",
        "/v1/slices",
        &[],
        Some(&json!({ "name": "x", "limits": { "memroy_max": 1 } })),
        Some(400),
    );
    assert_eq!(typo.body["field"], "limits.memroy_max", "{}", typo.body);
    c.invalid = true;
    let bad = c.call(
        &d,
        "POST",
        "/v1/slices",
        &[],
        Some(&json!({ "name": "Bad Name" })),
        Some(400),
    );
    assert_eq!(bad.body["field"], "name", "{}", bad.body);
    let list = c.call(&d, "GET", "/v1/slices", &[], None, Some(200));
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    c.call(&d, "GET", "/v1/slices/{name}", &[], None, Some(200));
    let stats = c.call(&d, "GET", "/v1/slices/{name}/stats", &[], None, Some(200));
    assert!(stats.body["usage"].is_object(), "{}", stats.body);
    c.call(&d, "POST", "/v1/slices/{name}/start", &[], None, Some(409));
    // Files and the console log (tar bodies: files_cp.rs; here the documented replies).
    let logs = c.call(
        &d,
        "GET",
        "/v1/slices/{name}/logs",
        &[("tail", "5")],
        None,
        Some(200),
    );
    assert!(logs.body.is_string(), "{}", logs.body);
    c.call(
        &d,
        "GET",
        "/v1/slices/{name}/files",
        &[("path", "/nonexistent")],
        None,
        Some(404),
    );
    let rel = c.call(
        &d,
        "PUT",
        "/v1/slices/{name}/files",
        &[("path", "relative")],
        None,
        Some(400),
    );
    assert_eq!(rel.body["field"], "path", "{}", rel.body);

    // The patch the hand-written document refused: rates.
    let patch = json!({
        "cpu_weight": 300, "cpu_max": 0.5, "cpuset": "0", "memory_max": 134217728,
        "swap_max": 0, "pids_max": 200, "egress_rate": 8000000, "ingress_rate": 9000000
    });
    let patched = c.call(
        &d,
        "PATCH",
        "/v1/slices/{name}/limits",
        &[],
        Some(&patch),
        Some(200),
    );
    assert_eq!(patched.body["spec"]["net"]["egress_rate"], 8000000);
    assert_eq!(patched.body["spec"]["net"]["ingress_rate"], 9000000);
    assert_eq!(patched.body["spec"]["limits"]["pids_max"], 200);
    let refused = c.call(
        &d,
        "PATCH",
        "/v1/slices/{name}/limits",
        &[],
        Some(&json!({ "egress_rate": 1 })),
        Some(400),
    );
    assert_eq!(refused.body["field"], "net.egress_rate", "{}", refused.body);

    // exec with every member of the body and the query.
    let input = json!({
        "argv": ["/bin/sh", "-c", "cat; echo \"$Y\" >&2; pwd"],
        "env": ["Y=why"], "cwd": "/tmp", "stdin": "ignored", "stdin_base64": "aGk=",
        "timeout_secs": 20
    });
    let out = c.call(
        &d,
        "POST",
        "/v1/slices/{name}/exec",
        &[("encoding", "base64")],
        Some(&input),
        Some(200),
    );
    assert_eq!(out.body["encoding"], "base64");
    let stdout = vslice::proto::b64::decode(out.body["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(String::from_utf8_lossy(&stdout), "hi/tmp\n", "{}", out.body);
    tty_session(&mut c, &d);

    // Bodies built from the schemas alone.
    c.generated(&d, "PATCH", "/v1/slices/{name}/limits");
    c.generated(&d, "POST", "/v1/slices/{name}/exec");
    c.generated(&d, "POST", "/v1/slices");

    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/stop",
        &[("timeout", "1.5")],
        None,
        Some(200),
    );
    c.invalid = true;
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/stop",
        &[("timeout", "9999")],
        None,
        Some(400),
    );
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/exec",
        &[],
        Some(&json!({ "argv": ["true"] })),
        Some(409),
    );
    let restarted = c.call(
        &d,
        "POST",
        "/v1/slices/{name}/restart",
        &[("timeout", "1")],
        None,
        Some(200),
    );
    assert_eq!(restarted.body["status"], "running");

    let events = c.call(
        &d,
        "GET",
        "/v1/events",
        &[
            ("slice", SLICE),
            ("since", "0"),
            ("follow", "false"),
            ("type", "created,started,exited,limits-changed"),
        ],
        None,
        Some(200),
    );
    let types: BTreeSet<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains("created") && types.contains("limits-changed"),
        "{types:?}"
    );
    c.call(
        &d,
        "GET",
        "/v1/events",
        &[("follow", "false"), ("since", "0")],
        None,
        Some(200),
    );

    let audit = c.call(
        &d,
        "GET",
        "/v1/audit",
        &[
            ("slice", SLICE),
            ("action", "create"),
            ("kind", "control"),
            ("since", "2020-01-01"),
            ("until", "4102444800"),
            ("after_seq", "0"),
            ("limit", "10"),
            ("tail", "true"),
        ],
        None,
        Some(200),
    );
    assert!(!audit.body.as_array().unwrap().is_empty());
    let all = c.call(&d, "GET", "/v1/audit", &[], None, Some(200));
    let kinds: BTreeSet<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["control", "daemon"]));
    c.invalid = true; // a string, but not a time
    c.call(
        &d,
        "GET",
        "/v1/audit",
        &[("since", "never")],
        None,
        Some(400),
    );
    // The flow log (no traffic here: empty answers, but every parameter understood).
    let who = c.call(
        &d,
        "GET",
        "/v1/who",
        &[
            ("remote", "203.0.113.7:22"),
            ("at", "2026-01-02T03:04:05Z"),
            ("window", "10m"),
            ("proto", "tcp"),
        ],
        None,
        Some(200),
    );
    assert_eq!(who.body["slices"], json!([]), "{}", who.body);
    c.call(
        &d,
        "GET",
        "/v1/audit/flows",
        &[
            ("slice", SLICE),
            ("since", "2020-01-01"),
            ("until", "4102444800"),
            ("limit", "10"),
        ],
        None,
        Some(200),
    );
    c.call(
        &d,
        "GET",
        "/v1/audit/execs",
        &[("slice", SLICE), ("since", "2020-01-01"), ("limit", "10")],
        None,
        Some(200),
    );
    c.invalid = true; // not an address
    c.call(
        &d,
        "GET",
        "/v1/who",
        &[("remote", "nowhere"), ("at", "2026-01-02")],
        None,
        Some(400),
    );
    let verify = c.call(&d, "GET", "/v1/audit/verify", &[], None, Some(200));
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
    let metrics = c.call(&d, "GET", "/metrics", &[], None, Some(200));
    assert!(metrics.body.as_str().unwrap().contains("vslice"));

    // SSH keys (tests/ssh_access.rs adds real ones; the harness runs with SSH access off, so
    // no host account is made here).
    let keys = c.call(&d, "GET", "/v1/slices/{name}/keys", &[], None, Some(200));
    assert_eq!(keys.body, json!([]));
    let key = json!({ "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEMlK0aF0S8DreJn1pyxiP5nn4NagDp/csBnw9wLcm0p t@x" });
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/keys",
        &[],
        Some(&key),
        Some(409),
    );
    c.call(
        &d,
        "DELETE",
        "/v1/slices/{name}/keys/{fingerprint}",
        &[],
        None,
        Some(404),
    );

    c.call(&d, "DELETE", "/v1/slices/{name}", &[], None, Some(204));
    c.call(&d, "GET", "/v1/slices/{name}", &[], None, Some(404));
    c.call(&d, "GET", "/v1/slices/{name}/stats", &[], None, Some(404));
    c.call(&d, "DELETE", "/v1/slices/{name}", &[], None, Some(404));

    // Images (tests/image_import_*.rs import real ones): no such image, no such file.
    c.call(&d, "GET", "/v1/images/{name}", &[], None, Some(404));
    c.call(&d, "DELETE", "/v1/images/{name}", &[], None, Some(404));
    let missing = json!({ "path": "/nonexistent/vslice-contract.tar", "name": "contract" });
    let r = c.call(&d, "POST", "/v1/images", &[], Some(&missing), Some(400));
    assert_eq!(r.body["field"], "path", "{}", r.body);

    // Snapshots of a slice that no longer exists (tests/snapshot_clone.rs makes real ones).
    c.call(
        &d,
        "GET",
        "/v1/slices/{name}/snapshots",
        &[],
        None,
        Some(404),
    );
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/snapshots",
        &[],
        Some(&json!({ "name": "s1" })),
        Some(404),
    );
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/restore",
        &[],
        Some(&json!({ "snapshot": "s1" })),
        Some(404),
    );
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/clone",
        &[],
        Some(&json!({ "name": "contract-copy" })),
        Some(404),
    );
    c.call(
        &d,
        "POST",
        "/v1/slices/{name}/export",
        &[],
        Some(&json!({ "path": "/nonexistent/x.tar.zst" })),
        Some(404),
    );
    let r = c.call(
        &d,
        "POST",
        "/v1/slices/{name}/import",
        &[],
        Some(&json!({ "path": "/nonexistent/x.tar.zst" })),
        Some(400),
    );
    assert_eq!(r.body["field"], "path", "{}", r.body);

    let all_ops: BTreeSet<(String, String)> = operations(&c.doc).into_iter().collect();
    let missed: Vec<_> = all_ops.difference(&c.covered).collect();
    assert!(missed.is_empty(), "operations never called: {missed:?}");
    d.assert_consistent();
}
