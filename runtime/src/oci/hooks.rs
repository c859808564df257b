//! OCI hooks: each hook is `path` run with `args` (args[0] is argv[0]) and exactly `env`, the
//! container's state JSON on stdin, and an optional `timeout` in seconds after which it is
//! killed. A hook failing (non-zero exit, signal, timeout, not executable) fails the step it
//! belongs to, except poststart and poststop, whose failures are only logged (runtime-spec).
//!
//! Where each runs (runtime-spec "Lifecycle"; see `sandbox::OciExtras`):
//!
//! | hook            | called by                    | namespaces          | when                          |
//! |-----------------|------------------------------|---------------------|-------------------------------|
//! | prestart        | `create`, host side          | runtime's           | namespaces exist, before pivot|
//! | createRuntime   | `create`, host side          | runtime's           | right after prestart          |
//! | createContainer | init                         | container's (not yet pivoted: host paths) | before pivot_root |
//! | startContainer  | init                         | container's         | once `start` opened the FIFO, before exec; `start` returns after them |
//! | poststart       | `start`                      | runtime's           | after the program was started |
//! | poststop        | `delete`                     | runtime's           | after the container is gone   |
use oci_spec::runtime::Hook;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `hooks` in order; stop at the first failure.
pub fn run_all(kind: &str, hooks: &[Hook], state_json: &str) -> Result<(), String> {
    for (i, h) in hooks.iter().enumerate() {
        run(h, state_json)
            .map_err(|e| format!("{kind} hook #{i} ({}): {e}", h.path().display()))?;
    }
    Ok(())
}

/// Run `hooks` in order, logging (not returning) failures: for poststart and poststop.
pub fn run_all_logged(kind: &str, hooks: &[Hook], state_json: &str) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run(h, state_json) {
            super::log::warn(&format!("{kind} hook #{i} ({}): {e}", h.path().display()));
        }
    }
}

/// An anonymous in-memory file for the hook's stdout and stderr (read back for the error
/// message; a pipe could fill up and stall the hook).
fn memfd() -> Result<std::fs::File, String> {
    // SAFETY: plain syscall with a static NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"vslice-hook-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn run(h: &Hook, state_json: &str) -> Result<(), String> {
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        match e.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(e, ""),
        };
    }
    // The state goes in through a file, not a pipe: a hook that never reads its stdin can
    // neither block us on a full pipe (before its timeout is even armed) nor make us write
    // into a closed one.
    let mut state = memfd()?;
    state
        .write_all(state_json.as_bytes())
        .and_then(|()| state.rewind())
        .map_err(|e| format!("state for stdin: {e}"))?;
    let mut out = memfd()?;
    let out2 = out.try_clone().map_err(|e| format!("dup: {e}"))?;
    cmd.stdin(Stdio::from(state))
        .stdout(Stdio::from(
            out2.try_clone().map_err(|e| format!("dup: {e}"))?,
        ))
        .stderr(Stdio::from(out2));
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let timeout = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let started = Instant::now();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if let Some(t) = timeout {
            if started.elapsed() >= t {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", t.as_secs()));
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = out.rewind();
    let _ = Read::by_ref(&mut out).take(4096).read_to_string(&mut text);
    let text = text.trim();
    Err(format!(
        "{status}{}{text}",
        if text.is_empty() { "" } else { ": " }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}; echo \"$FOO:$HOME\" >> {}", out.display(), out.display())],
            "env": ["FOO=bar"],
        }));
        run_all("test", &[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"}bar:\n"
        );
    }

    #[test]
    fn failure_and_timeout_are_errors_with_output() {
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}),
        );
        let e = run_all("prestart", &[h], "{}").unwrap_err();
        assert!(
            e.contains("prestart hook #0") && e.contains("nope") && e.contains('3'),
            "{e}"
        );
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1}),
        );
        let t = Instant::now();
        let e = run_all("poststart", &[h], "{}").unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
