//! The OpenAPI 3.1 description of the API, served at `GET /v1/openapi.json`, generated with
//! `utoipa` from the wire types in [`crate::proto`] (their `ToSchema` derives follow their
//! serde attributes: renames, tags, flattening, defaults, `deny_unknown_fields`), so the
//! schemas cannot drift from what the daemon and the client (de)serialize.
//!
//! The operations are declared below, one `#[utoipa::path]` per route of [`super::ROUTES`]
//! (the handlers live in files that other code owns; a declaration here keeps the whole
//! contract in one place). What cannot drift is checked: a unit test and the daemon tests
//! compare the document's operations with the route table both ways, `x-vslice-access` and
//! the 403/500 replies are filled in from the route table itself, and
//! `tests/api_contract.rs` calls every operation on a real daemon and validates each reply
//! against the schema the document gives for its status.
use crate::proto::accounting::{
    ExecRecord, FlowEnd, FlowProcess, FlowRecord, FlowTuple, KindQuery, WhoAnswer, WhoFlow,
    WhoParams,
};
use crate::proto::image_import::{ImageConfig, ImageDetails, ImportRequest, ImportResult};
use crate::proto::snapshot::{
    CloneRequest, ExportRequest, ExportResult, RestoreRequest, SliceImportRequest, SnapshotInfo,
    SnapshotRequest,
};
use crate::proto::{
    AuditCaller, AuditEntry, AuditQuery, AuditRecord, ByteBudget, CallerInfo, ControlRecord,
    CopyResult, CreateRequest, DaemonRecord, ErrorBody, Event, EventKind, EventsQuery, ExecInput,
    ExecOutput, ExecQuery, ExitInfo, FilesQuery, Head, HostPort, Image, ImagesQuery, Info, Limits,
    LimitsPatch, LogsQuery, NetAllow, NetCounters, NetInfo, NetMode, NetSpec, Outcome,
    OutputEncoding, PortForward, Problem, Proto, Resize, SliceInfo, SliceSpec, Stats, Status,
    StopQuery, TtyExit, TtyQuery, Usage, VerifyReport, Volume,
};
use crate::proto::{DiskBacking, DiskUsage};
use crate::proto::{KeyAdd, SshKey};
use serde_json::{json, Value};
use utoipa::OpenApi;

/// The slice name in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct SliceName {
    /// Slice name (DNS label).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    name: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vslice daemon API",
        description = "HTTP/1.1 and JSON on the daemon's Unix sockets (`curl --unix-socket /run/vslice/vslice.sock http://localhost/v1/slices`). The caller is identified by SO_PEERCRED. `x-vslice-access`: `public` (anyone), `owner` (operators and the slice's owners; collections are filtered), `operator` (root and members of the admin group). Errors are `{code, message, field}`; `field` names the offending request field or query parameter. Mutations and execs are written to the audit log (fsynced) before the reply.",
    ),
    servers((url = "http://localhost", description = "Unix socket /run/vslice/vslice.sock (operators) or /run/vslice/user.sock (owners)")),
    paths(
        info, openapi_json, list_slices, create_slice, inspect_slice, destroy_slice,
        update_limits, start_slice, stop_slice, restart_slice, exec, exec_tty, stats, events,
        images, audit, audit_verify, metrics, list_keys, add_key, remove_key,
        copy_out, copy_in, logs, image_import, image_inspect, image_remove,
        list_snapshots, create_snapshot, restore_snapshot, clone_slice, export_slice, import_slice,
        audit_flows, audit_execs, who,
    ),
    components(schemas(
        AuditCaller, AuditEntry, AuditRecord, ByteBudget, CallerInfo, ControlRecord,
        CreateRequest, DaemonRecord, ErrorBody, Event, EventKind, ExecInput, ExecOutput,
        ExitInfo, Head, HostPort, Image, Info, Limits, LimitsPatch, NetAllow, NetCounters,
        NetInfo, NetMode, NetSpec, Outcome, OutputEncoding, PortForward, Problem, Proto, Resize,
        SliceInfo, SliceSpec, Stats, Status, TtyExit, Usage, VerifyReport, KeyAdd, SshKey,
        CopyResult, Volume,
        SliceInfo, SliceSpec, Stats, Status, TtyExit, Usage, VerifyReport,
        ImageConfig, ImageDetails, ImportRequest, ImportResult,
        CloneRequest, ExportRequest, ExportResult, RestoreRequest, SliceImportRequest,
        SnapshotInfo, SnapshotRequest,
        WhoAnswer, WhoFlow, FlowEnd, FlowRecord, FlowTuple, ExecRecord, FlowProcess,
        DiskBacking, DiskUsage,
    ))
)]
struct ApiDoc;

// One declaration per route. The functions are never called: they carry the attributes.

#[utoipa::path(get, path = "/v1/info", summary = "Daemon information",
    description = "Version, state root, cgroup layout, and who the caller is (uid, user, operator or not).",
    responses((status = 200, description = "Daemon version and the caller's identity.", body = Info)))]
#[allow(dead_code)]
fn info() {}

#[utoipa::path(get, path = "/v1/openapi.json", summary = "This document",
    description = "The OpenAPI 3.1 description of the API.",
    responses((status = 200, description = "OpenAPI document.", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[utoipa::path(get, path = "/v1/slices", summary = "List slices",
    description = "All slices for operators; the caller's own slices for everyone else.",
    responses((status = 200, description = "Slices, sorted by name.", body = Vec<SliceInfo>)))]
#[allow(dead_code)]
fn list_slices() {}

#[utoipa::path(post, path = "/v1/slices", summary = "Create a slice",
    description = "Validates the name (DNS label), image, policy, owners (host users), limits (against the policy's maxima) and network spec, allocates a uid range and persists the spec; starts the slice if `start` is true. A create that fails half-way leaves nothing behind.",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created.", body = SliceInfo),
        (status = 400, description = "Invalid request; `field` names the offending field.", body = ErrorBody),
        (status = 409, description = "A slice with this name exists (`already_exists`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_slice() {}

#[utoipa::path(get, path = "/v1/slices/{name}", summary = "Inspect a slice", params(SliceName),
    description = "Spec, status, init pid, uid range (spec.uid_base, 65536 ids), limits, last exit, usage and (bridge mode) network counters.",
    responses(
        (status = 200, description = "The slice.", body = SliceInfo),
        (status = 404, description = "No such slice (`not_found`; non-operators get 403 instead).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn inspect_slice() {}

#[utoipa::path(delete, path = "/v1/slices/{name}", summary = "Destroy a slice", params(SliceName),
    description = "Kills it if running, then removes its cgroups, network, upper directory and state.",
    responses(
        (status = 204, description = "Destroyed."),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn destroy_slice() {}

#[utoipa::path(patch, path = "/v1/slices/{name}/limits", summary = "Update limits", params(SliceName),
    description = "Changes the given limits (and, in bridge mode, the traffic rates); applied to the running cgroup and shaper at once and persisted. Emits `limits-changed`.",
    request_body = LimitsPatch,
    responses(
        (status = 200, description = "The slice with its new limits.", body = SliceInfo),
        (status = 400, description = "A limit is invalid or above the policy maximum; `field` names it.", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn update_limits() {}

#[utoipa::path(post, path = "/v1/slices/{name}/start", summary = "Start a slice", params(SliceName),
    description = "Spawns the slice's shim and init.",
    responses(
        (status = 200, description = "The running slice.", body = SliceInfo),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "Already running (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn start_slice() {}

#[utoipa::path(post, path = "/v1/slices/{name}/stop", summary = "Stop a slice", params(SliceName, StopQuery),
    description = "SIGTERM to init, SIGKILL after the timeout. Stopping a stopped slice succeeds.",
    responses(
        (status = 200, description = "The stopped slice.", body = SliceInfo),
        (status = 400, description = "Bad timeout (`field`: timeout).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn stop_slice() {}

#[utoipa::path(post, path = "/v1/slices/{name}/restart", summary = "Restart a slice", params(SliceName, StopQuery),
    description = "Stop (as above), then start.",
    responses(
        (status = 200, description = "The running slice.", body = SliceInfo),
        (status = 400, description = "Bad timeout (`field`: timeout).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn restart_slice() {}

#[utoipa::path(post, path = "/v1/slices/{name}/exec", summary = "Run a command", params(SliceName, ExecQuery),
    description = "Runs argv inside the running slice (as the slice's root, under its policy) and returns its output and exit code. Audited before it starts (`exec`) and when it ends (`exec_end`).",
    request_body = ExecInput,
    responses(
        (status = 200, description = "The command ran (whatever its exit code).", body = ExecOutput),
        (status = 400, description = "Invalid request.", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is not running.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn exec() {}

#[utoipa::path(get, path = "/v1/slices/{name}/exec/tty", summary = "Interactive command on a terminal (WebSocket)", params(SliceName, TtyQuery),
    description = "WebSocket upgrade. Runs the command (default `/bin/sh -l`: an interactive root shell, `vslice enter`) on a pseudo-terminal from the slice's devpts. Client→daemon binary frames are terminal input; a text frame `Resize` (`{\"cols\":C,\"rows\":R}`) resizes. Daemon→client binary frames are terminal output; the last text frame is `TtyExit` (`{\"exit_code\":N}`), followed by a close frame. Closing the socket hangs up the terminal.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket request, or invalid parameters.", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is not running.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn exec_tty() {}

#[utoipa::path(get, path = "/v1/slices/{name}/stats", summary = "Resource usage", params(SliceName),
    description = "CPU time, memory (current and peak), tasks and OOM kills of a running slice, with its limits.",
    responses(
        (status = 200, description = "Usage.", body = Stats),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn stats() {}

#[utoipa::path(get, path = "/v1/events", summary = "Event stream", params(EventsQuery),
    description = "Newline-delimited JSON events: created, started, exited (with reason), oom, limits-changed, destroyed. Followed by default (the response stays open; an empty line is sent every 15 s while idle — skip empty lines). Non-operators see only their slices' events. A follower that falls behind gets a `lagged` event with the number of events it missed.",
    responses(
        (status = 200, description = "Events, one JSON object per line.", body = Event, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn events() {}

#[utoipa::path(get, path = "/v1/images", summary = "List images", params(ImagesQuery),
    description = "Valid base images under <root>/images.",
    responses(
        (status = 200, description = "Images, sorted by name.", body = Vec<Image>),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn images() {}

/// The image name in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ImageName {
    /// Image name.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    name: String,
}

#[utoipa::path(post, path = "/v1/images", summary = "Import an OCI image",
    description = "Reads an OCI image layout directory, an oci-archive tar or a `docker save` tar at `path` on the node (offline), verifies every digest and diff_id, applies the layers (whiteouts, opaque directories; device nodes, `..`, absolute names and writes through symlinks refused) into a temporary directory and renames it to <root>/images/<name> (0700). Keeps the config's Env, WorkingDir, Entrypoint, Cmd and User. A failed import leaves nothing.",
    request_body = ImportRequest,
    responses(
        (status = 201, description = "Imported.", body = ImportResult),
        (status = 400, description = "Unreadable, malformed or hostile image, or bad name; `field` is `path` or `name`.", body = ErrorBody),
        (status = 409, description = "An image of that name exists (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn image_import() {}

#[utoipa::path(get, path = "/v1/images/{name}", summary = "Inspect an image", params(ImageName),
    description = "The image, its stored OCI config and the slices that use it.",
    responses(
        (status = 200, description = "The image.", body = ImageDetails),
        (status = 400, description = "Invalid image name.", body = ErrorBody),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn image_inspect() {}

#[utoipa::path(delete, path = "/v1/images/{name}", summary = "Remove an image", params(ImageName),
    description = "Removes an image no slice uses; refused (409, naming the slices) otherwise.",
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "Invalid image name.", body = ErrorBody),
        (status = 404, description = "No such image (`not_found`).", body = ErrorBody),
        (status = 409, description = "Slices use the image (`conflict`); the message names them.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn image_remove() {}

#[utoipa::path(get, path = "/v1/slices/{name}/snapshots", summary = "List snapshots", params(SliceName),
    description = "The slice's snapshots, sorted by name.",
    responses(
        (status = 200, description = "Snapshots.", body = Vec<SnapshotInfo>),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_snapshots() {}

#[utoipa::path(post, path = "/v1/slices/{name}/snapshots", summary = "Snapshot a slice", params(SliceName),
    description = "Saves the stopped slice's files (its upper layer; ids relative to its range) as <slice>/snapshots/<snap>.tar.zst.",
    request_body = SnapshotRequest,
    responses(
        (status = 201, description = "Saved.", body = SnapshotInfo),
        (status = 400, description = "Invalid snapshot name (`field`: name).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is running, or the snapshot exists (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_snapshot() {}

#[utoipa::path(post, path = "/v1/slices/{name}/restore", summary = "Restore a snapshot", params(SliceName),
    description = "Replaces the stopped slice's files with a snapshot (unpacked beside, then swapped in; a failure leaves the files as they were).",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored.", body = SliceInfo),
        (status = 400, description = "Invalid snapshot name or damaged snapshot.", body = ErrorBody),
        (status = 404, description = "No such slice or snapshot (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is running (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn restore_snapshot() {}

#[utoipa::path(post, path = "/v1/slices/{name}/clone", summary = "Clone a slice", params(SliceName),
    description = "Creates a stopped slice with a new uid range, the same image, policy, limits, owners, init and network (without published ports), and a copy of the source's files with every owner shifted into the new range.",
    request_body = CloneRequest,
    responses(
        (status = 201, description = "The new slice.", body = SliceInfo),
        (status = 400, description = "Invalid name (`field`: name).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The source is running, or the new name exists.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn clone_slice() {}

#[utoipa::path(post, path = "/v1/slices/{name}/export", summary = "Export a slice", params(SliceName),
    description = "Writes the stopped slice's spec and files (ids relative to its range) to a zstd-compressed tar at `path` on the node.",
    request_body = ExportRequest,
    responses(
        (status = 200, description = "Written.", body = ExportResult),
        (status = 400, description = "Bad path (`field`: path).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is running (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn export_slice() {}

#[utoipa::path(post, path = "/v1/slices/{name}/import", summary = "Import a slice", params(SliceName),
    description = "Creates (stopped) slice `name` from an archive written by export: validated like a create (image, policy, owners must exist here), a new uid range, the files re-based on it. The archive is untrusted: `..`, writes through symlinks and device nodes are refused.",
    request_body = SliceImportRequest,
    responses(
        (status = 201, description = "The new slice.", body = SliceInfo),
        (status = 400, description = "Unreadable or hostile archive, or an invalid spec in it.", body = ErrorBody),
        (status = 409, description = "A slice of that name exists.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn import_slice() {}

#[utoipa::path(get, path = "/v1/audit", summary = "Read the audit log", params(AuditQuery),
    description = "Stored records, one per line, exactly as written (canonical JSON), oldest first.",
    responses(
        (status = 200, description = "Records, one JSON object per line.", body = AuditRecord, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad filter; `field` names the parameter.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit() {}

#[utoipa::path(get, path = "/v1/audit/verify", summary = "Verify the audit log",
    description = "Checks every record's hash, the seq sequence and the chain across segments, and that the log ends at the last record written (detects edited, deleted and truncated records).",
    responses((status = 200, description = "The report (`ok` false if anything is wrong).", body = VerifyReport)))]
#[allow(dead_code)]
fn audit_verify() {}

#[utoipa::path(get, path = "/v1/who", summary = "Who talked to a remote address", params(WhoParams),
    description = "Answers a complaint from the flow log: the slices (and owners) with a flow to or from `remote` (and port) within `window` of `at`, each flow with its public (NATed / forwarded) address and port, bytes and times. `lossy` is true when the flow log lost records in the window.",
    responses(
        (status = 200, description = "The slices and flows.", body = WhoAnswer),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn who() {}

#[utoipa::path(get, path = "/v1/audit/flows", summary = "Read the flow log", params(KindQuery),
    description = "Stored flow records (`new`, `end`, `seen`, `loss`) of a time window, one per line as stored (canonical JSON, hash-chained).",
    responses(
        (status = 200, description = "Records, one JSON object per line.", body = FlowRecord, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit_flows() {}

#[utoipa::path(get, path = "/v1/audit/execs", summary = "Read the exec log", params(KindQuery),
    description = "Stored exec records (every execve in every slice, from the process events connector) of a time window, one per line as stored (canonical JSON, hash-chained).",
    responses(
        (status = 200, description = "Records, one JSON object per line.", body = ExecRecord, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit_execs() {}

#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics",
    description = "Text exposition format: per-slice CPU seconds, memory, tasks, OOM kills; daemon request counts and latency histograms per route.",
    responses((status = 200, description = "Metrics.", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

/// A key's fingerprint in a path (percent-encode its `/` and `+`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct KeyPath {
    /// Slice name (DNS label).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    name: String,
    /// `SHA256:…` as listed by `GET /v1/slices/{name}/keys`.
    fingerprint: String,
}

#[utoipa::path(get, path = "/v1/slices/{name}/keys", summary = "SSH keys of a slice", params(SliceName),
    description = "The public keys that may log in to the slice over SSH (`ssh NAME@node`).",
    responses(
        (status = 200, description = "The keys (empty: no SSH access).", body = Vec<SshKey>),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_keys() {}

#[utoipa::path(post, path = "/v1/slices/{name}/keys", summary = "Authorize an SSH key", params(SliceName),
    description = "Adds a public key (authorized_keys format, no options). The first key gives the slice SSH access: its host account (named like the slice) is created. Takes effect at the next login. Audited (`ssh_key_add`, with the fingerprint).",
    request_body = KeyAdd,
    responses(
        (status = 201, description = "The key as stored.", body = SshKey),
        (status = 400, description = "Not a supported public key (`field`: key).", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
        (status = 409, description = "The key is already there (`already_exists`), or the host account cannot be made (`conflict`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn add_key() {}

#[utoipa::path(delete, path = "/v1/slices/{name}/keys/{fingerprint}", summary = "Revoke an SSH key", params(KeyPath),
    description = "Removes the key; logins with it are refused from then on. Audited (`ssh_key_remove`).",
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such slice or key (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn remove_key() {}
#[utoipa::path(get, path = "/v1/slices/{name}/files", summary = "Copy files out of a slice", params(SliceName, FilesQuery),
    description = "A tar stream (GNU format) of `path` in the running slice: a file, or a directory with everything below it on the slice's root filesystem (mount points are skipped; FIFOs, sockets and devices too). Paths resolve inside the slice's root (openat2 RESOLVE_IN_ROOT); symlinks below `path` are archived as symlinks, never followed. Headers carry the slice's ids. Only `path` is accepted on GET. An error after the stream started ends it early (a cut archive).",
    responses(
        (status = 200, description = "The archive; its top entry is the last component of `path`.", body = String, content_type = "application/x-tar"),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
        (status = 404, description = "No such slice, or no such path in it (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is not running, or the path crosses a mount point of the slice (/proc, /sys, /dev, a volume) or is not a file or directory.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn copy_out() {}

#[utoipa::path(put, path = "/v1/slices/{name}/files", summary = "Copy files into a slice", params(SliceName, FilesQuery),
    description = "Unpack the tar stream of the body into the running slice: into `path` if it is an existing directory, else as `path` (the archive's single top-level name replaced by the last component of `path`; its parent must exist). Regular files, directories and symlinks only; absolute or `..` entry names are refused. Everything written is owned by the slice ids `uid`/`gid` (default 0: the slice's root); modes are kept. Existing files and symlinks are replaced, existing directories reused. No entry is written through a symlink of the slice or outside its root filesystem. The body is streamed (no size cap besides the slice's disk).",
    request_body(content = String, content_type = "application/x-tar", description = "A tar stream."),
    responses(
        (status = 200, description = "What was written.", body = CopyResult),
        (status = 400, description = "Bad parameter or archive; `field` names it (`body` for the archive).", body = ErrorBody),
        (status = 404, description = "No such slice, or the parent of `path` does not exist (`not_found`).", body = ErrorBody),
        (status = 409, description = "The slice is not running, an entry would replace a directory or go through a symlink, or the path crosses a mount point of the slice.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn copy_in() {}

#[utoipa::path(get, path = "/v1/slices/{name}/logs", summary = "Console log", params(SliceName, LogsQuery),
    description = "What the slice's init and the services it starts wrote to stdout and stderr, kept by the slice's shim in the slice's state directory (rotated at 1 MiB; the previous file is kept, so at most 2 MiB per slice). With `follow`, the response stays open and carries what is written next (checked every 250 ms) until the client closes it, the slice is destroyed or the daemon stops.",
    responses(
        (status = 200, description = "The log text (bytes as written).", body = String, content_type = "text/plain"),
        (status = 400, description = "Bad parameter; `field` names it.", body = ErrorBody),
        (status = 404, description = "No such slice (`not_found`).", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn logs() {}

fn error_reply(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The document.
pub fn document() -> Value {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(v) => v,
        // utoipa's types serialize to JSON by construction; a failure is a bug in them.
        Err(e) => return json!({ "error": format!("cannot serialize the OpenAPI document: {e}") }),
    };
    doc["info"]["version"] = json!(crate::daemon::VERSION);
    doc["info"]["license"] = Value::Null;
    if let Some(info) = doc["info"].as_object_mut() {
        info.retain(|_, v| !v.is_null());
    }
    // Access levels and the replies every route shares come from the route table.
    for r in super::ROUTES {
        let op = &mut doc["paths"][r.path][r.method.to_lowercase()];
        let Some(op) = op.as_object_mut() else {
            continue; // undocumented: the tests report it
        };
        op.insert("x-vslice-access".into(), json!(r.access.as_str()));
        op.insert("x-vslice-audited".into(), json!(r.audited));
        let responses = op
            .entry("responses")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(responses) = responses {
            if r.access != super::Access::Public {
                responses
                    .entry("403")
                    .or_insert_with(|| error_reply("The caller may not do this (`forbidden`)."));
            }
            responses.entry("500").or_insert_with(|| {
                error_reply("Internal error (`internal`, `start_failed`, `audit_failed`).")
            });
        }
    }
    doc
}

/// A standalone JSON Schema (draft 2020-12, which OpenAPI 3.1 schemas are) for `schema`
/// (usually a `$ref` into the document), carrying the document's components so references
/// resolve. With `strict`, objects refuse members the document does not declare
/// (`unevaluatedProperties: false` on a root `$ref` and on every component that is not
/// flattened into another), so a reply with a field the document lacks fails validation.
pub fn standalone_schema(doc: &Value, schema: &Value, strict: bool) -> Value {
    let mut components = doc["components"].clone();
    if strict {
        let mut flattened = std::collections::HashSet::new();
        allof_refs(&doc["components"], &mut flattened);
        if let Some(schemas) = components["schemas"].as_object_mut() {
            for (name, s) in schemas.iter_mut() {
                // A component used as an `allOf` part (serde `flatten`) sees only its own
                // members; the strictness of the whole is checked where it is flattened into.
                let flattened = flattened.contains(name.as_str());
                if !flattened && s.is_object() {
                    s["unevaluatedProperties"] = json!(false);
                }
            }
        }
    }
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": components,
    });
    if let (Some(r), Some(s)) = (root.as_object_mut(), schema.as_object()) {
        for (k, v) in s {
            r.insert(k.clone(), v.clone());
        }
        // A reference to a component is strict like the component; a free-form inline
        // schema (`{"type": "object"}`) stays free-form.
        if strict && s.contains_key("$ref") {
            r.insert("unevaluatedProperties".into(), json!(false));
        }
    }
    root
}

/// Names of the components referenced directly from an `allOf`.
fn allof_refs(v: &Value, out: &mut std::collections::HashSet<String>) {
    match v {
        Value::Object(m) => {
            for part in m
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = part["$ref"].as_str() {
                    out.insert(r.trim_start_matches("#/components/schemas/").to_string());
                }
            }
            m.values().for_each(|x| allof_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| allof_refs(x, out)),
        _ => {}
    }
}

/// A value built from `schema` as a client generator would: every property, `example`s
/// where given, the first enum value, the `variant`-th non-null `oneOf` branch (clamped),
/// the minimum of bounded numbers. Tests send these to the daemon and deserialize them into
/// the Rust types: what the document describes must be accepted.
pub fn sample_instance(doc: &Value, schema: &Value, variant: usize) -> Value {
    sample(doc, schema, variant, 0)
}

fn sample(doc: &Value, schema: &Value, variant: usize, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return sample(doc, &doc["components"]["schemas"][name], variant, depth + 1);
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        let real: Vec<&Value> = branches.iter().filter(|b| b["type"] != "null").collect();
        if let Some(b) = real.get(variant.min(real.len().saturating_sub(1))) {
            return sample(doc, b, variant, depth + 1);
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for p in parts {
            if let Value::Object(m) = sample(doc, p, variant, depth + 1) {
                merged.extend(m);
            }
        }
        return Value::Object(merged);
    }
    let ty = match &schema["type"] {
        Value::Array(types) => types
            .iter()
            .find(|t| *t != "null")
            .and_then(Value::as_str)
            .unwrap_or("null"),
        Value::String(t) => t.as_str(),
        _ if schema["properties"].is_object() => "object",
        _ => "null",
    };
    let bounded = |default: f64| {
        let lo = schema["minimum"]
            .as_f64()
            .map_or(default, |m| m.max(default));
        schema["maximum"].as_f64().map_or(lo, |m| lo.min(m))
    };
    match ty {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, p)| (k.clone(), sample(doc, p, variant, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => json!([sample(doc, &schema["items"], variant, depth + 1)]),
        "string" => json!(match schema["format"].as_str() {
            Some("date-time") => "2026-01-02T03:04:05Z",
            Some("ipv4") => "10.0.0.2",
            _ => "a",
        }),
        "integer" => json!(bounded(1.0) as i64),
        "number" => json!(bounded(0.5)),
        "boolean" => json!(true),
        _ => Value::Null,
    }
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

    use crate::proto::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::fmt::Debug;

    /// One component schema and the Rust type behind it.
    struct Case {
        name: &'static str,
        /// Serialized fully-populated values (one per enum variant).
        samples: Vec<Value>,
        /// Deserialize into the type and serialize again (or the serde error).
        reparse: fn(Value) -> Result<Value, String>,
    }

    fn reparse<T: Serialize + DeserializeOwned>(v: Value) -> Result<Value, String> {
        let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
        serde_json::to_value(&t).map_err(|e| e.to_string())
    }

    fn case<T: Serialize + DeserializeOwned + PartialEq + Debug>(
        name: &'static str,
        values: Vec<T>,
    ) -> Case {
        let samples = values
            .iter()
            .map(|v| {
                let json = serde_json::to_value(v).unwrap();
                // serde round trip: what a client gets back is what was sent.
                let back: T = serde_json::from_value(json.clone()).unwrap();
                assert_eq!(&back, v, "{name}: serde round trip");
                json
            })
            .collect();
        Case {
            name,
            samples,
            reparse: reparse::<T>,
        }
    }

    fn image_config() -> ImageConfig {
        ImageConfig {
            env: vec!["A=b".into()],
            working_dir: Some("/srv".into()),
            entrypoint: vec!["/app".into()],
            cmd: vec!["--serve".into()],
            user: Some("1000".into()),
            format: "oci-archive".into(),
            config_digest: format!("sha256:{}", "ab".repeat(32)),
            layers: 2,
            imported_at: 3,
        }
    }

    fn limits() -> Limits {
        Limits {
            cpu_weight: Some(200),
            cpu_max: Some(0.5),
            cpuset: Some("0-1".into()),
            memory_max: Some(256 << 20),
            swap_max: Some(64 << 20),
            pids_max: Some(128),
            disk_max: Some(20 << 30),
            inodes_max: Some(1_000_000),
            io_weight: Some(100),
            io_read_bps: Some(100 << 20),
            io_write_bps: Some(50 << 20),
            io_read_iops: Some(2000),
            io_write_iops: Some(1000),
        }
    }

    fn disk_usage() -> DiskUsage {
        DiskUsage {
            backing: DiskBacking::Project,
            used_bytes: 1 << 20,
            limit_bytes: 20 << 30,
            used_inodes: 100,
            limit_inodes: Some(1_000_000),
            device: Some("7:3".into()),
        }
    }

    fn net() -> NetSpec {
        NetSpec {
            mode: NetMode::Bridge,
            ports: vec![PortForward {
                host_port: 8080,
                slice_port: 80,
                proto: Proto::Udp,
            }],
            egress_rate: Some(10_000_000),
            egress_burst: Some(16_000),
            ingress_rate: Some(20_000_000),
            ingress_burst: Some(32_000),
            weight: Some(3),
            budget: Some(ByteBudget {
                max_bytes: 1 << 30,
                thresh_bytes: 1 << 29,
            }),
            allow: NetAllow {
                slices: vec!["*".into()],
                host_ports: vec![HostPort {
                    port: 53,
                    proto: Proto::Udp,
                }],
            },
        }
    }

    fn usage() -> Usage {
        Usage {
            cpu_usage_ns: 1,
            memory_current: 2,
            memory_peak: 3,
            pids_current: 4,
            oom_kills: 5,
        }
    }

    fn counters() -> NetCounters {
        NetCounters {
            bytes_out: 1,
            packets_out: 2,
            bytes_in: 3,
            packets_in: 4,
            dropped_shaping_out: 5,
            dropped_shaping_in: 6,
            dropped_spoofed: 7,
            dropped_policy: 8,
            dropped_non_ipv4: 9,
            budget_used_bytes: Some(10),
            budget_throttle_bps: Some(8000),
        }
    }

    fn spec() -> SliceSpec {
        SliceSpec {
            name: "web".into(),
            image: "busybox".into(),
            policy: "default".into(),
            limits: limits(),
            owners: vec!["alice".into()],
            autostart: true,
            init: vec!["/sbin/init".into()],
            net: net(),
            uid_base: 100_000,
            created_at: 1_700_000_000,
            volumes: vec![volume()],
        }
    }

    fn volume() -> Volume {
        Volume {
            host: "/srv/data".into(),
            path: "/data".into(),
            read_only: true,
        }
    }

    fn exit() -> ExitInfo {
        ExitInfo {
            code: Some(1),
            signal: Some(9),
            oom_killed: true,
            reason: "oom-killed".into(),
            at: 1_700_000_100,
        }
    }

    fn net_info() -> NetInfo {
        NetInfo {
            address: Some("10.215.0.2".parse().unwrap()),
            host_veth: "vs0web".into(),
            counters: counters(),
        }
    }

    fn slice_info() -> SliceInfo {
        SliceInfo {
            spec: spec(),
            status: Status::Running,
            init_pid: Some(42),
            shim_pid: Some(41),
            started_at: Some(1_700_000_050),
            last_exit: Some(exit()),
            usage: Some(usage()),
            net: Some(net_info()),
            disk: Some(disk_usage()),
        }
    }

    fn caller() -> AuditCaller {
        AuditCaller {
            uid: 1000,
            user: Some("alice".into()),
            pid: Some(7),
            mode: Some("direct".into()),
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            ok: false,
            status: 409,
            code: Some("conflict".into()),
            message: Some("running".into()),
            exit_code: Some(3),
        }
    }

    fn control() -> ControlRecord {
        ControlRecord {
            caller: caller(),
            action: "create".into(),
            slice: Some("web".into()),
            args: json!({ "name": "web" }),
            result: outcome(),
        }
    }

    fn daemon_record() -> DaemonRecord {
        DaemonRecord {
            event: "start".into(),
            pid: 1,
            version: "0.1.0".into(),
            slice: Some("web".into()),
            detail: Some("ok".into()),
        }
    }

    fn record(entry: AuditEntry) -> AuditRecord {
        AuditRecord {
            seq: 1,
            time: "2026-01-02T03:04:05.678Z".into(),
            entry,
            prev_hash: "00".repeat(32),
            hash: "ab".repeat(32),
        }
    }

    fn event_kinds() -> Vec<EventKind> {
        vec![
            EventKind::Created,
            EventKind::Started { init_pid: Some(42) },
            EventKind::Exited {
                reason: "signaled".into(),
                code: Some(0),
                signal: Some(15),
            },
            EventKind::Oom { oom_kills: 2 },
            EventKind::LimitsChanged { limits: limits() },
            EventKind::Destroyed,
            EventKind::Lagged { missed: 9 },
        ]
    }

    fn head() -> Head {
        Head {
            seq: 3,
            hash: "cd".repeat(32),
        }
    }

    fn problem() -> Problem {
        Problem {
            segment: "audit-00000001.ndjson".into(),
            line: 2,
            seq: Some(2),
            reason: "hash mismatch".into(),
        }
    }

    /// Every component schema with fully-populated values of its Rust type.
    fn cases() -> Vec<Case> {
        vec![
            case("AuditCaller", vec![caller()]),
            case(
                "AuditEntry",
                vec![
                    AuditEntry::Control(control()),
                    AuditEntry::Daemon(daemon_record()),
                ],
            ),
            case(
                "AuditRecord",
                vec![
                    record(AuditEntry::Control(control())),
                    record(AuditEntry::Daemon(daemon_record())),
                ],
            ),
            case(
                "CopyResult",
                vec![CopyResult {
                    entries: 3,
                    bytes: 1024,
                }],
            ),
            case(
                "ByteBudget",
                vec![ByteBudget {
                    max_bytes: 2,
                    thresh_bytes: 1,
                }],
            ),
            case(
                "CallerInfo",
                vec![CallerInfo {
                    uid: 0,
                    gid: 0,
                    pid: Some(1),
                    user: Some("root".into()),
                    operator: true,
                }],
            ),
            case("ControlRecord", vec![control()]),
            case(
                "CreateRequest",
                vec![CreateRequest {
                    name: "web".into(),
                    image: Some("busybox".into()),
                    policy: Some("default".into()),
                    limits: limits(),
                    owners: vec!["alice".into()],
                    autostart: true,
                    init: Some(vec!["/bin/sh".into()]),
                    net: net(),
                    start: true,
                    volumes: vec![volume()],
                }],
            ),
            case("Volume", vec![volume()]),
            case("DaemonRecord", vec![daemon_record()]),
            case(
                "Error",
                vec![ErrorBody {
                    code: "invalid".into(),
                    message: "limits.memory_max: too small".into(),
                    field: Some("limits.memory_max".into()),
                }],
            ),
            case(
                "Event",
                event_kinds()
                    .into_iter()
                    .enumerate()
                    .map(|(i, kind)| Event {
                        seq: i as u64 + 1,
                        time: "2026-01-02T03:04:05Z".into(),
                        slice: "web".into(),
                        kind,
                    })
                    .collect(),
            ),
            case("EventKind", event_kinds()),
            case(
                "ExecInput",
                vec![ExecInput {
                    argv: vec!["cat".into()],
                    env: vec!["A=1".into()],
                    cwd: Some("/".into()),
                    stdin: Some("hi".into()),
                    stdin_base64: Some("aGk=".into()),
                    timeout_secs: Some(5),
                }],
            ),
            case(
                "ExecOutput",
                vec![ExecOutput {
                    exit_code: 0,
                    stdout: "aGk=".into(),
                    stderr: "".into(),
                    encoding: "base64".into(),
                    truncated: true,
                    timed_out: true,
                }],
            ),
            case("ExitInfo", vec![exit()]),
            case(
                "KeyAdd",
                vec![KeyAdd {
                    key: "ssh-ed25519 AAAA x".into(),
                }],
            ),
            case(
                "SshKey",
                vec![SshKey {
                    fingerprint: "SHA256:x".into(),
                    key_type: "ssh-ed25519".into(),
                    key: "AAAA".into(),
                    comment: "a@b".into(),
                    added_at: "2026-01-02T03:04:05.000Z".into(),
                }],
            ),
            case("Head", vec![head()]),
            case(
                "HostPort",
                vec![HostPort {
                    port: 22,
                    proto: Proto::Tcp,
                }],
            ),
            case(
                "Image",
                vec![Image {
                    name: "busybox".into(),
                    rootfs: "/var/lib/vslice/images/busybox/rootfs".into(),
                    size_bytes: 1,
                    created: 2,
                }],
            ),
            case(
                "Info",
                vec![Info {
                    version: "0.1.0".into(),
                    api: "v1".into(),
                    pid: 1,
                    started_at: 2,
                    root: "/var/lib/vslice".into(),
                    cgroup_parent: "vslice".into(),
                    cgroup_version: "hybrid".into(),
                    caller: CallerInfo {
                        uid: 0,
                        gid: 0,
                        pid: None,
                        user: None,
                        operator: true,
                    },
                }],
            ),
            case("Limits", vec![limits()]),
            case(
                "LimitsPatch",
                vec![LimitsPatch {
                    cpu_weight: Some(1),
                    cpu_max: Some(1.5),
                    cpuset: Some("0".into()),
                    memory_max: Some(1 << 30),
                    swap_max: Some(0),
                    pids_max: Some(10),
                    egress_rate: Some(1_000_000),
                    ingress_rate: Some(2_000_000),
                    disk_max: Some(40 << 30),
                    inodes_max: Some(2_000_000),
                    io_weight: Some(200),
                    io_read_bps: Some(0),
                    io_write_bps: Some(10 << 20),
                    io_read_iops: Some(500),
                    io_write_iops: Some(0),
                }],
            ),
            case("NetAllow", vec![net().allow]),
            case("NetCounters", vec![counters()]),
            case("NetInfo", vec![net_info()]),
            case("NetMode", vec![NetMode::None, NetMode::Bridge]),
            case("NetSpec", vec![net()]),
            case("Outcome", vec![outcome(), Outcome::ok(200)]),
            case(
                "OutputEncoding",
                vec![OutputEncoding::Utf8, OutputEncoding::Base64],
            ),
            case("PortForward", vec![net().ports[0]]),
            case("Problem", vec![problem()]),
            case("Proto", vec![Proto::Tcp, Proto::Udp]),
            case("Resize", vec![Resize { cols: 80, rows: 24 }]),
            case("SliceInfo", vec![slice_info()]),
            case("SliceSpec", vec![spec()]),
            case(
                "Stats",
                vec![Stats {
                    slice: "web".into(),
                    time: "2026-01-02T03:04:05Z".into(),
                    status: Status::Running,
                    init_pid: Some(42),
                    started_at: Some(1),
                    limits: limits(),
                    usage: Some(usage()),
                    disk: Some(disk_usage()),
                }],
            ),
            case("Status", vec![Status::Stopped, Status::Running]),
            case("TtyExit", vec![TtyExit { exit_code: 130 }]),
            case("Usage", vec![usage()]),
            case("DiskBacking", vec![DiskBacking::Project, DiskBacking::Loop]),
            case(
                "DiskUsage",
                vec![
                    disk_usage(),
                    DiskUsage {
                        backing: DiskBacking::Loop,
                        limit_inodes: None,
                        device: None,
                        ..disk_usage()
                    },
                ],
            ),
            case(
                "ImportRequest",
                vec![ImportRequest {
                    path: "/srv/app.tar".into(),
                    name: Some("app".into()),
                }],
            ),
            case("ImageConfig", vec![image_config()]),
            case(
                "ImportResult",
                vec![ImportResult {
                    name: "app".into(),
                    config: image_config(),
                    entries: 10,
                    bytes: 20,
                }],
            ),
            case(
                "ImageDetails",
                vec![ImageDetails {
                    image: Image {
                        name: "app".into(),
                        rootfs: "/var/lib/vslice/images/app/rootfs".into(),
                        size_bytes: 1,
                        created: 2,
                    },
                    config: image_config(),
                    used_by: vec!["web".into()],
                }],
            ),
            case(
                "SnapshotInfo",
                vec![SnapshotInfo {
                    name: "s1".into(),
                    size_bytes: 1,
                    created: 2,
                }],
            ),
            case(
                "SnapshotRequest",
                vec![SnapshotRequest {
                    name: Some("s1".into()),
                }],
            ),
            case(
                "RestoreRequest",
                vec![RestoreRequest {
                    snapshot: "s1".into(),
                }],
            ),
            case(
                "CloneRequest",
                vec![CloneRequest {
                    name: "web2".into(),
                }],
            ),
            case(
                "ExportRequest",
                vec![ExportRequest {
                    path: "/srv/web.tar.zst".into(),
                }],
            ),
            case(
                "ExportResult",
                vec![ExportResult {
                    name: "web".into(),
                    path: "/srv/web.tar.zst".into(),
                    entries: 3,
                    bytes: 4,
                    size_bytes: 5,
                }],
            ),
            case(
                "SliceImportRequest",
                vec![SliceImportRequest {
                    path: "/srv/web.tar.zst".into(),
                }],
            ),
            case(
                "VerifyReport",
                vec![VerifyReport {
                    ok: false,
                    segments: 1,
                    records: 3,
                    last_seq: 3,
                    last_hash: "cd".repeat(32),
                    head: Some(head()),
                    problems: vec![problem()],
                }],
            ),
            case("FlowEnd", vec![flow_end()]),
            case("FlowProcess", vec![flow_process(), FlowProcess::default()]),
            case("FlowTuple", vec![flow_tuple()]),
            case(
                "ExecRecord",
                vec![ExecRecord {
                    seq: 1,
                    time: "2026-01-02T03:04:05.000Z".into(),
                    kind: "execs".into(),
                    event: "exec".into(),
                    source: Some("bpf".into()),
                    slice: Some("web".into()),
                    slice_cgroup_id: Some(1234),
                    pid: Some(4242),
                    pid_in_slice: Some(Some(7)),
                    ppid: Some(Some(4000)),
                    uid: Some(Some(100000)),
                    uid_in_slice: Some(Some(0)),
                    path: Some(Some("/usr/bin/true".into())),
                    argv: Some(Some(vec!["/bin/true".into()])),
                    argv_truncated: Some(false),
                    gone: Some(false),
                    reason: Some("ENOBUFS".into()),
                    lost_before: Some(1),
                    count: Some(2),
                    prev_hash: "ab".repeat(32),
                    hash: "cd".repeat(32),
                }],
            ),
            case(
                "FlowRecord",
                vec![FlowRecord {
                    seq: 1,
                    time: "2026-01-02T03:04:05.000Z".into(),
                    kind: "flows".into(),
                    event: "end".into(),
                    slice: Some("web".into()),
                    owners: Some(vec!["alice".into()]),
                    veth: Some("vs2".into()),
                    mark: Some(1979711490),
                    ct_id: Some(Some(7)),
                    proto: Some("tcp".into()),
                    dir: Some("out".into()),
                    orig: Some(flow_tuple()),
                    reply: Some(flow_tuple()),
                    packets_orig: Some(Some(1)),
                    bytes_orig: Some(Some(60)),
                    packets_reply: Some(Some(1)),
                    bytes_reply: Some(Some(60)),
                    duration_s: Some(3),
                    reason: Some("ENOBUFS".into()),
                    lost_before: Some(2),
                    process: who_flow().process,
                    prev_hash: "ab".repeat(32),
                    hash: "cd".repeat(32),
                }],
            ),
            case("WhoFlow", vec![who_flow()]),
            case(
                "WhoAnswer",
                vec![WhoAnswer {
                    remote: "203.0.113.7".into(),
                    port: Some(22),
                    from: "2026-01-02T03:00:00.000Z".into(),
                    to: "2026-01-02T03:20:00.000Z".into(),
                    slices: vec!["web".into()],
                    flows: vec![who_flow()],
                    lossy: true,
                    lost: 1,
                }],
            ),
        ]
    }

    fn flow_tuple() -> FlowTuple {
        FlowTuple {
            src: "10.213.0.2".into(),
            dst: "203.0.113.7".into(),
            sport: Some(40000),
            dport: Some(22),
        }
    }

    fn flow_end() -> FlowEnd {
        FlowEnd {
            time: "2026-01-02T03:04:05.000Z".into(),
            duration_s: Some(3),
        }
    }

    fn who_flow() -> WhoFlow {
        WhoFlow {
            slice: "web".into(),
            owners: vec!["alice".into()],
            veth: "vs2".into(),
            proto: "tcp".into(),
            direction: "out".into(),
            slice_addr: "10.213.0.2".into(),
            slice_port: Some(40000),
            public_addr: "192.0.2.1".into(),
            public_port: Some(40000),
            remote_addr: "203.0.113.7".into(),
            remote_port: Some(22),
            first_seen: "2026-01-02T03:04:02.000Z".into(),
            last_seen: "2026-01-02T03:04:05.000Z".into(),
            end: Some(flow_end()),
            bytes_from_slice: Some(100),
            bytes_to_slice: Some(200),
            process: Some(flow_process()),
        }
    }

    fn flow_process() -> FlowProcess {
        FlowProcess {
            pid: 4242,
            pid_in_slice: Some(42),
            ppid: Some(4200),
            uid: Some(100_000),
            uid_in_slice: Some(0),
            comm: "ssh".into(),
            path: Some("/usr/bin/ssh".into()),
            argv: Some(vec!["ssh".into(), "203.0.113.7".into()]),
        }
    }

    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let schema = standalone_schema(
            doc,
            &json!({ "$ref": format!("#/components/schemas/{name}") }),
            true,
        );
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{name}: not a valid JSON Schema: {e}"))
    }

    /// Property names an object schema declares (through `$ref`, `allOf` and `oneOf`).
    fn declared(doc: &Value, schema: &Value, out: &mut std::collections::BTreeSet<String>) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return declared(doc, &doc["components"]["schemas"][name], out);
        }
        if let Some(p) = schema["properties"].as_object() {
            out.extend(p.keys().cloned());
        }
        for key in ["allOf", "oneOf"] {
            for s in schema[key].as_array().into_iter().flatten() {
                declared(doc, s, out);
            }
        }
    }

    #[test]
    fn every_schema_is_valid_json_schema() {
        let doc = document();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let wrapped = standalone_schema(&doc, schema, false);
            if let Err(e) = jsonschema::meta::validate(&wrapped) {
                panic!("{name}: {e}");
            }
        }
    }

    /// Types → document: a fully-populated value of every type validates against its schema
    /// (strictly: a member the schema does not declare fails), and populates every member the
    /// schema declares. Document → types: a value built from each schema deserializes into
    /// the type. Every component has a case, and every case a component.
    #[test]
    fn schemas_describe_the_types_both_ways() {
        let doc = document();
        let cases = cases();
        let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
        names.sort();
        let mut components: Vec<&str> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        components.sort();
        assert_eq!(names, components, "a test case per component schema");
        for c in &cases {
            let v = validator(&doc, c.name);
            let schema = &doc["components"]["schemas"][c.name];
            let mut seen = std::collections::BTreeSet::new();
            for sample in &c.samples {
                let errors: Vec<String> = v.iter_errors(sample).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {sample}\n{errors:#?}", c.name);
                if let Some(m) = sample.as_object() {
                    seen.extend(m.keys().cloned());
                }
            }
            let mut want = std::collections::BTreeSet::new();
            declared(&doc, schema, &mut want);
            let missing: Vec<_> = want.difference(&seen).collect();
            assert!(
                missing.is_empty(),
                "{}: declared but never populated by the samples: {missing:?}",
                c.name
            );
            // Every oneOf branch, as a client generator would build it.
            let branches = schema["oneOf"].as_array().map_or(1, Vec::len).max(1);
            for variant in 0..branches.max(8) {
                let built = sample_instance(&doc, schema, variant);
                let back = (c.reparse)(built.clone())
                    .unwrap_or_else(|e| panic!("{}: {built} is refused: {e}", c.name));
                let errors: Vec<String> = v.iter_errors(&back).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {back}\n{errors:#?}", c.name);
            }
        }
    }

    /// The drift the hand-written document had: LimitsPatch refused the rates the server
    /// takes, NetSpec listed only `mode`.
    #[test]
    fn limits_patch_and_net_spec_are_complete() {
        let doc = document();
        let v = validator(&doc, "LimitsPatch");
        assert!(v.is_valid(&json!({ "egress_rate": 8000, "ingress_rate": 16000 })));
        assert!(!v.is_valid(&json!({ "egres_rate": 8000 })));
        assert!(!v.is_valid(&json!({ "cpu_weight": 0 })));
        let props = doc["components"]["schemas"]["NetSpec"]["properties"]
            .as_object()
            .unwrap();
        for f in [
            "mode",
            "ports",
            "egress_rate",
            "egress_burst",
            "ingress_rate",
            "ingress_burst",
            "weight",
            "budget",
            "allow",
        ] {
            assert!(props.contains_key(f), "NetSpec.{f}");
        }
        let v = validator(&doc, "Event");
        assert!(!v.is_valid(
            &json!({ "seq": 1, "time": "2026-01-02T03:04:05Z", "slice": "a", "type": "exploded" })
        ));
        assert!(
            !v.is_valid(&json!({ "seq": 1, "time": "yesterday", "slice": "a", "type": "created" }))
        );
        assert!(!v.is_valid(&json!({ "seq": 1, "time": "2026-01-02T03:04:05Z", "slice": "a", "type": "created", "extra": 1 })));
    }

    #[test]
    fn query_parameters_are_documented() {
        let doc = document();
        let names = |method: &str, path: &str| -> Vec<String> {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("post", "/v1/slices/{name}/stop"), ["timeout"]);
        assert_eq!(
            names("get", "/v1/events"),
            ["slice", "since", "follow", "type"]
        );
        assert_eq!(
            names("get", "/v1/audit"),
            [
                "slice",
                "action",
                "kind",
                "since",
                "until",
                "after_seq",
                "limit",
                "tail"
            ]
        );
        let tty = &doc["paths"]["/v1/slices/{name}/exec/tty"]["get"]["parameters"];
        let cmd = tty
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cmd")
            .unwrap();
        assert_eq!(
            (cmd["explode"].clone(), cmd["required"].clone()),
            (json!(true), json!(false))
        );
    }
}
