//! The OpenAPI 3 description of the API, served at `GET /v1/openapi.json`. Hand-written;
//! a unit test and an integration test check it against [`super::ROUTES`] both ways, and
//! that each operation's `x-vslice-access` matches the route table.
use serde_json::{json, Value};

fn err(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn name_param() -> Value {
    json!({ "name": "name", "in": "path", "required": true, "description": "Slice name (DNS label).", "schema": { "type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" } })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn op(
    access: &str,
    summary: &str,
    description: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    mut responses: Value,
) -> Value {
    let r = responses.as_object_mut().expect("responses object");
    if access != "public" {
        r.entry("403")
            .or_insert_with(|| err("The caller may not do this."));
    }
    r.entry("500")
        .or_insert_with(|| err("Internal error (`internal`, `start_failed`, `audit_failed`)."));
    let mut o = json!({
        "summary": summary,
        "description": description,
        "x-vslice-access": access,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(b) = body {
        o["requestBody"] =
            json!({ "required": false, "content": { "application/json": { "schema": b } } });
    }
    o
}

/// The document.
pub fn document() -> Value {
    let info_ok = ok_json(
        "Daemon version and the caller's identity.",
        schema_ref("Info"),
    );
    let slice_ok = ok_json("The slice.", schema_ref("SliceInfo"));
    let not_found = err("No such slice (`not_found`; non-operators get 403 instead).");
    let timeout = query(
        "timeout",
        "Seconds between SIGTERM and SIGKILL (default: the daemon's stop_timeout).",
        json!({ "type": "number", "minimum": 0, "maximum": 3600 }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "vslice daemon API",
            "version": crate::daemon::VERSION,
            "description": "HTTP/1.1 and JSON on the daemon's Unix sockets (`curl --unix-socket /run/vslice/vslice.sock http://localhost/v1/slices`). The caller is identified by SO_PEERCRED. `x-vslice-access`: `public` (anyone), `owner` (operators and the slice's owners; collections are filtered), `operator` (root and members of the admin group). Errors are `{code, message, field}`. Mutations and execs are written to the audit log (fsynced) before the reply."
        },
        "servers": [ { "url": "http://localhost", "description": "Unix socket /run/vslice/vslice.sock (operators) or /run/vslice/user.sock (owners)" } ],
        "paths": {
            "/v1/info": { "get": op("public", "Daemon information", "Version, state root, cgroup layout, and who the caller is (uid, user, operator or not).", vec![], None, json!({ "200": info_ok })) },
            "/v1/openapi.json": { "get": op("public", "This document", "The OpenAPI 3 description of the API.", vec![], None, json!({ "200": { "description": "OpenAPI document.", "content": { "application/json": { "schema": { "type": "object" } } } } })) },
            "/v1/slices": {
                "get": op("owner", "List slices", "All slices for operators; the caller's own slices for everyone else.", vec![], None,
                    json!({ "200": ok_json("Slices, sorted by name.", json!({ "type": "array", "items": schema_ref("SliceInfo") })) })),
                "post": op("operator", "Create a slice", "Validates the name (DNS label), image, policy, owners (host users) and limits (against the policy's maxima), allocates a uid range and persists the spec; starts the slice if `start` is true. A create that fails half-way leaves nothing behind.", vec![], Some(schema_ref("CreateRequest")),
                    json!({ "201": ok_json("Created.", schema_ref("SliceInfo")), "400": err("Invalid request; `field` names the offending field."), "409": err("A slice with this name exists (`already_exists`).") })),
            },
            "/v1/slices/{name}": {
                "get": op("owner", "Inspect a slice", "Spec, status, init pid, uid range (spec.uid_base, 65536 ids), limits, last exit and usage.", vec![name_param()], None, json!({ "200": slice_ok.clone(), "404": not_found.clone() })),
                "delete": op("operator", "Destroy a slice", "Kills it if running, then removes its cgroups, upper directory and state.", vec![name_param()], None, json!({ "204": { "description": "Destroyed." }, "404": not_found.clone() })),
            },
            "/v1/slices/{name}/limits": {
                "patch": op("operator", "Update limits", "Changes the given limits; applied to the running cgroup at once and persisted. Emits `limits-changed`.", vec![name_param()], Some(schema_ref("LimitsPatch")),
                    json!({ "200": slice_ok.clone(), "400": err("A limit is invalid or above the policy maximum; `field` names it."), "404": not_found.clone() })),
            },
            "/v1/slices/{name}/start": {
                "post": op("operator", "Start a slice", "Spawns the slice's shim and init.", vec![name_param()], None, json!({ "200": slice_ok.clone(), "404": not_found.clone(), "409": err("Already running (`conflict`).") })),
            },
            "/v1/slices/{name}/stop": {
                "post": op("operator", "Stop a slice", "SIGTERM to init, SIGKILL after the timeout. Stopping a stopped slice succeeds.", vec![name_param(), timeout.clone()], None, json!({ "200": slice_ok.clone(), "404": not_found.clone(), "400": err("Bad timeout.") })),
            },
            "/v1/slices/{name}/restart": {
                "post": op("operator", "Restart a slice", "Stop (as above), then start.", vec![name_param(), timeout], None, json!({ "200": slice_ok.clone(), "404": not_found.clone(), "400": err("Bad timeout.") })),
            },
            "/v1/slices/{name}/exec": {
                "post": op("owner", "Run a command", "Runs argv inside the running slice (as the slice's root, under its policy) and returns its output and exit code. Audited before it starts (`exec`) and when it ends (`exec_end`).",
                    vec![name_param(), query("encoding", "`auto` (default: utf8 if the output is valid UTF-8) or `base64`.", json!({ "type": "string", "enum": ["auto", "base64"] }))],
                    Some(schema_ref("ExecInput")),
                    json!({ "200": ok_json("The command ran (whatever its exit code).", schema_ref("ExecOutput")), "400": err("Invalid request."), "404": not_found.clone(), "409": err("The slice is not running.") })),
            },
            "/v1/slices/{name}/exec/tty": {
                "get": op("owner", "Interactive command on a terminal (WebSocket)",
                    "WebSocket upgrade. Runs the command (default `/bin/sh -l`: an interactive root shell, `vslice enter`) on a pseudo-terminal from the slice's devpts. Client→daemon binary frames are terminal input; a text frame `{\"cols\":C,\"rows\":R}` resizes. Daemon→client binary frames are terminal output; the last text frame is `{\"exit_code\":N}`, followed by a close frame. Closing the socket hangs up the terminal.",
                    vec![name_param(),
                         query("cmd", "Command and arguments, one `cmd=` per word, in order.", json!({ "type": "array", "items": { "type": "string" } })),
                         query("env", "`NAME=value`, repeatable.", json!({ "type": "array", "items": { "type": "string" } })),
                         query("cwd", "Working directory inside the slice.", json!({ "type": "string" })),
                         query("cols", "Initial terminal width (default 80).", json!({ "type": "integer" })),
                         query("rows", "Initial terminal height (default 24).", json!({ "type": "integer" }))],
                    None,
                    json!({ "101": { "description": "Switching to the WebSocket protocol." }, "400": err("Not a WebSocket request, or invalid parameters."), "404": not_found.clone(), "409": err("The slice is not running.") })),
            },
            "/v1/slices/{name}/stats": {
                "get": op("owner", "Resource usage", "CPU time, memory (current and peak), tasks and OOM kills of a running slice, with its limits.", vec![name_param()], None, json!({ "200": ok_json("Usage.", schema_ref("Stats")), "404": not_found })),
            },
            "/v1/events": {
                "get": op("owner", "Event stream",
                    "Newline-delimited JSON events: created, started, exited (with reason), oom, limits-changed, destroyed. Followed by default (the response stays open; an empty line is sent every 15 s while idle — skip empty lines). Non-operators see only their slices' events. A follower that falls behind gets a `lagged` event with the number of events it missed.",
                    vec![query("slice", "Only this slice.", json!({ "type": "string" })),
                         query("since", "First send buffered events with a larger seq (0: all buffered).", json!({ "type": "integer" })),
                         query("follow", "Keep the stream open (default true); false: buffered events only.", json!({ "type": "boolean" })),
                         query("type", "Comma-separated event types.", json!({ "type": "string" }))],
                    None,
                    json!({ "200": { "description": "Events, one JSON object per line.", "content": { "application/x-ndjson": { "schema": schema_ref("Event") } } } })),
            },
            "/v1/images": {
                "get": op("operator", "List images", "Valid base images under <root>/images.", vec![query("size", "Compute each image's disk usage (walks the tree).", json!({ "type": "boolean" }))], None,
                    json!({ "200": ok_json("Images, sorted by name.", json!({ "type": "array", "items": schema_ref("Image") })) })),
            },
            "/v1/audit": {
                "get": op("operator", "Read the audit log", "Stored records, one per line, exactly as written (canonical JSON), oldest first.",
                    vec![query("slice", "Only this slice.", json!({ "type": "string" })),
                         query("action", "Only this action (create, start, stop, restart, update_limits, destroy, exec, exec_end) or daemon event.", json!({ "type": "string" })),
                         query("kind", "Only this record kind (control, daemon).", json!({ "type": "string" })),
                         query("since", "From this time (RFC 3339, YYYY-MM-DD or epoch seconds).", json!({ "type": "string" })),
                         query("until", "Up to this time.", json!({ "type": "string" })),
                         query("after_seq", "Only records with a larger seq.", json!({ "type": "integer" })),
                         query("limit", "At most this many records.", json!({ "type": "integer" })),
                         query("tail", "With limit: the last records instead of the first.", json!({ "type": "boolean" }))],
                    None,
                    json!({ "200": { "description": "Records.", "content": { "application/x-ndjson": { "schema": schema_ref("AuditRecord") } } }, "400": err("Bad filter; `field` names the parameter.") })),
            },
            "/v1/audit/verify": {
                "get": op("operator", "Verify the audit log", "Checks every record's hash, the seq sequence and the chain across segments, and that the log ends at the last record written (detects edited, deleted and truncated records).", vec![], None,
                    json!({ "200": ok_json("The report (`ok` false if anything is wrong).", schema_ref("VerifyReport")) })),
            },
            "/metrics": {
                "get": op("operator", "Prometheus metrics", "Text exposition format: per-slice CPU seconds, memory, tasks, OOM kills; daemon request counts and latency histograms per route.", vec![], None,
                    json!({ "200": { "description": "Metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } } })),
            },
        },
        "components": { "schemas": schemas() }
    })
}

fn schemas() -> Value {
    let opt_u64 = json!({ "type": "integer", "minimum": 0, "nullable": true });
    let limits_props = json!({
        "cpu_weight": { "type": "integer", "minimum": 1, "maximum": 10000, "nullable": true, "description": "Relative CPU share under contention (default 100)." },
        "cpu_max": { "type": "number", "nullable": true, "description": "Hard cap in CPUs (0.5 = half a core)." },
        "cpuset": { "type": "string", "nullable": true, "description": "CPUs the slice may run on (\"0-1,3\")." },
        "memory_max": { "type": "integer", "nullable": true, "description": "Memory limit in bytes." },
        "swap_max": { "type": "integer", "nullable": true, "description": "Swap limit in bytes (needs memory_max)." },
        "pids_max": { "type": "integer", "nullable": true, "description": "Maximum number of tasks." },
    });
    json!({
        "Error": { "type": "object", "required": ["code", "message", "field"], "properties": {
            "code": { "type": "string", "enum": ["not_found", "already_exists", "invalid", "conflict", "forbidden", "start_failed", "exec_failed", "internal", "no_route", "method_not_allowed", "audit_failed"] },
            "message": { "type": "string" },
            "field": { "type": "string", "nullable": true, "description": "JSON path of the offending request field, e.g. limits.memory_max." } } },
        "Limits": { "type": "object", "additionalProperties": false, "properties": limits_props.clone() },
        "LimitsPatch": { "type": "object", "additionalProperties": false, "description": "Only the given fields change.", "properties": limits_props },
        "NetSpec": { "type": "object", "properties": { "mode": { "type": "string", "enum": ["none", "bridge"] } } },
        "CreateRequest": { "type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": { "type": "string", "description": "DNS label: 1-63 of a-z, 0-9, '-', not starting or ending with '-'." },
            "image": { "type": "string", "nullable": true, "description": "Base image (default busybox)." },
            "policy": { "type": "string", "nullable": true, "description": "Policy (default \"default\")." },
            "limits": schema_ref("Limits"),
            "owners": { "type": "array", "items": { "type": "string" }, "description": "Host users who may inspect, exec into and enter the slice." },
            "autostart": { "type": "boolean", "description": "Start when the daemon (node) starts." },
            "init": { "type": "array", "items": { "type": "string" }, "nullable": true, "description": "Init command (default /sbin/init)." },
            "net": schema_ref("NetSpec"),
            "start": { "type": "boolean", "description": "Start right after creating." } } },
        "SliceSpec": { "type": "object", "properties": {
            "name": { "type": "string" }, "image": { "type": "string" }, "policy": { "type": "string" },
            "limits": schema_ref("Limits"), "owners": { "type": "array", "items": { "type": "string" } },
            "autostart": { "type": "boolean" }, "init": { "type": "array", "items": { "type": "string" } },
            "net": schema_ref("NetSpec"),
            "uid_base": { "type": "integer", "description": "First host uid/gid of the slice's 65536 ids (slice uid 0)." },
            "created_at": { "type": "integer", "description": "Unix seconds." } } },
        "ExitInfo": { "type": "object", "properties": {
            "code": { "type": "integer", "nullable": true }, "signal": { "type": "integer", "nullable": true },
            "oom_killed": { "type": "boolean" },
            "reason": { "type": "string", "enum": ["exited", "signaled", "oom-killed", "start-failed"] },
            "at": { "type": "integer" } } },
        "Usage": { "type": "object", "properties": {
            "cpu_usage_ns": { "type": "integer" }, "memory_current": { "type": "integer" }, "memory_peak": { "type": "integer" },
            "pids_current": { "type": "integer" }, "oom_kills": { "type": "integer" } } },
        "SliceInfo": { "type": "object", "properties": {
            "spec": schema_ref("SliceSpec"),
            "status": { "type": "string", "enum": ["running", "stopped"] },
            "init_pid": { "type": "integer", "nullable": true }, "shim_pid": { "type": "integer", "nullable": true },
            "started_at": opt_u64.clone(),
            "last_exit": { "allOf": [schema_ref("ExitInfo")], "nullable": true },
            "usage": { "allOf": [schema_ref("Usage")], "nullable": true } } },
        "ExecInput": { "type": "object", "additionalProperties": false, "required": ["argv"], "properties": {
            "argv": { "type": "array", "items": { "type": "string" } },
            "env": { "type": "array", "items": { "type": "string" }, "description": "NAME=value" },
            "cwd": { "type": "string", "nullable": true },
            "stdin": { "type": "string", "nullable": true, "description": "Standard input as text." },
            "stdin_base64": { "type": "string", "nullable": true, "description": "Standard input, base64." },
            "timeout_secs": { "type": "integer", "nullable": true, "description": "Kill after this many seconds (exit code 137)." } } },
        "ExecOutput": { "type": "object", "properties": {
            "exit_code": { "type": "integer", "description": "128+N if killed by signal N; 126: could not run; 127: not found." },
            "stdout": { "type": "string" }, "stderr": { "type": "string" },
            "encoding": { "type": "string", "enum": ["utf8", "base64"] },
            "truncated": { "type": "boolean" }, "timed_out": { "type": "boolean" } } },
        "Stats": { "type": "object", "properties": {
            "slice": { "type": "string" }, "time": { "type": "string", "format": "date-time" },
            "status": { "type": "string", "enum": ["running", "stopped"] },
            "init_pid": { "type": "integer", "nullable": true }, "started_at": opt_u64,
            "limits": schema_ref("Limits"), "usage": { "allOf": [schema_ref("Usage")], "nullable": true } } },
        "Event": { "type": "object", "required": ["seq", "time", "slice", "type"], "properties": {
            "seq": { "type": "integer" }, "time": { "type": "string", "format": "date-time" }, "slice": { "type": "string" },
            "type": { "type": "string", "enum": ["created", "started", "exited", "oom", "limits-changed", "destroyed", "lagged"] },
            "init_pid": { "type": "integer", "description": "started" },
            "reason": { "type": "string", "description": "exited: exited, signaled, oom-killed, start-failed" },
            "code": { "type": "integer", "nullable": true, "description": "exited" },
            "signal": { "type": "integer", "nullable": true, "description": "exited" },
            "oom_kills": { "type": "integer", "description": "oom: the slice's total" },
            "limits": schema_ref("Limits"),
            "missed": { "type": "integer", "description": "lagged" } } },
        "Image": { "type": "object", "properties": {
            "name": { "type": "string" }, "rootfs": { "type": "string" },
            "size_bytes": { "type": "integer" }, "created": { "type": "integer" } } },
        "AuditRecord": { "type": "object", "required": ["seq", "time", "kind", "prev_hash", "hash"], "properties": {
            "seq": { "type": "integer" }, "time": { "type": "string", "format": "date-time" },
            "kind": { "type": "string", "enum": ["control", "daemon"], "description": "Further kinds (network flows, in-slice processes) will be added." },
            "caller": { "type": "object", "properties": { "uid": { "type": "integer" }, "user": { "type": "string", "nullable": true }, "pid": { "type": "integer", "nullable": true } } },
            "action": { "type": "string" }, "slice": { "type": "string", "nullable": true },
            "args": { "type": "object" },
            "result": { "type": "object", "properties": { "ok": { "type": "boolean" }, "status": { "type": "integer" }, "code": { "type": "string" }, "message": { "type": "string" }, "exit_code": { "type": "integer" } } },
            "event": { "type": "string", "description": "daemon records: start, autostart, recovery" },
            "prev_hash": { "type": "string" },
            "hash": { "type": "string", "description": "sha256(prev_hash + canonical JSON of the record without hash), hex." } } },
        "VerifyReport": { "type": "object", "properties": {
            "ok": { "type": "boolean" }, "segments": { "type": "integer" }, "records": { "type": "integer" },
            "last_seq": { "type": "integer" }, "last_hash": { "type": "string" },
            "head": { "type": "object", "nullable": true, "properties": { "seq": { "type": "integer" }, "hash": { "type": "string" } } },
            "problems": { "type": "array", "items": { "type": "object", "properties": {
                "segment": { "type": "string" }, "line": { "type": "integer" }, "seq": { "type": "integer", "nullable": true }, "reason": { "type": "string" } } } } } },
        "Info": { "type": "object", "properties": {
            "version": { "type": "string" }, "api": { "type": "string" }, "pid": { "type": "integer" }, "started_at": { "type": "integer" },
            "root": { "type": "string" }, "cgroup_parent": { "type": "string" }, "cgroup_version": { "type": "string" },
            "caller": { "type": "object", "properties": {
                "uid": { "type": "integer" }, "gid": { "type": "integer" }, "pid": { "type": "integer", "nullable": true },
                "user": { "type": "string", "nullable": true }, "operator": { "type": "boolean" } } } } },
    })
}

/// (method, path) of every operation in the document.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(methods) = item.as_object() {
                for m in methods.keys() {
                    out.push((m.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn document_and_route_table_agree() {
        let doc = document();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        routes.sort();
        assert_eq!(
            operations(&doc),
            routes,
            "OpenAPI paths vs the router's routes"
        );
        for r in ROUTES {
            let o = &doc["paths"][r.path][r.method.to_lowercase()];
            assert_eq!(
                o["x-vslice-access"],
                r.access.as_str(),
                "{} {}",
                r.method,
                r.path
            );
            // Path parameters are declared.
            for seg in r.path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let declared = o["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == name);
                assert!(declared, "{} {} does not declare {name}", r.method, r.path);
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "unresolved $ref {name}"
            );
        }
    }
}
