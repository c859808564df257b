//! The device cgroup (`linux.resources.devices`): which device nodes the container may open
//! or mknod. Without it, a container whose root keeps CAP_MKNOD (containerd's default
//! capability set does) could create and open the host's disks.
//!
//! cgroup v1: a directory in the `devices` hierarchy at the container's cgroup path, the rules
//! written in order to `devices.deny` / `devices.allow`, joined by the executor's
//! intermediate process before it forks init (and by `exec` before it forks the joiner). The rest of vslice's cgroup code does not use the
//! devices controller (slices rely on their user namespace instead), so this lives here.
//!
//! cgroup v2 has no devices files: the same rules are compiled into a
//! BPF_PROG_TYPE_CGROUP_DEVICE program (see [`bpf`]) attached to the container's cgroup,
//! which the kernel runs on every device open and mknod below it (like runc and crun do).
use super::{err, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::path::{Path, PathBuf};

/// Mount point of the v1 `devices` hierarchy, from /proc/self/mountinfo.
pub fn v1_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        if super_opts.split(',').any(|o| o == "devices") {
            return left.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

/// One rule as the v1 files take it: `c 1:3 rwm`.
pub fn rule_line(r: &LinuxDeviceCgroup) -> Result<String> {
    let t = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::P => {
            return Err(err!(
                "linux.resources.devices: type \"p\" is not a device cgroup type"
            ))
        }
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(err!("linux.resources.devices: invalid access {access:?}"));
    }
    Ok(format!(
        "{t} {}:{} {access}",
        num(r.major()),
        num(r.minor())
    ))
}

/// Rules runc adds after the spec's own: mknod of any node (opening one still needs a rule),
/// and the nodes every container gets (null, zero, full, random, urandom, tty, console, ptmx,
/// the container's own ptys). A spec that denies everything still gets a usable /dev/null.
pub const IMPLICIT_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Make the device cgroup for `cgroup` and write `rules` (then [`IMPLICIT_ALLOW`]); returns
/// its directory. No rules: no device cgroup (every device allowed, as the spec says).
pub fn setup(cgroup: &str, rules: &[LinuxDeviceCgroup]) -> Result<Option<PathBuf>> {
    if rules.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<(bool, String)> = rules
        .iter()
        .map(|r| Ok((r.allow(), rule_line(r)?)))
        .collect::<Result<_>>()?;
    lines.extend(IMPLICIT_ALLOW.iter().map(|l| (true, l.to_string())));
    if crate::cgroup::detect() == crate::cgroup::Version::V2 {
        // The cgroup itself carries the program (created here; the executor's create is
        // idempotent); removing the cgroup detaches it.
        crate::cgroup::Cgroup::new(cgroup).create()?;
        let dir = Path::new("/sys/fs/cgroup").join(cgroup);
        let mut all = rules.to_vec();
        all.extend(implicit_rules());
        bpf::attach(&dir, &all)?;
        return Ok(None);
    }
    let mount = v1_mount().ok_or_else(|| {
        err!("linux.resources.devices: the cgroup v1 devices controller is not mounted")
    })?;
    let dir = mount.join(cgroup);
    std::fs::create_dir_all(&dir).map_err(|e| err!("mkdir {}: {e}", dir.display()))?;
    let result = (|| {
        for (allow, line) in &lines {
            let file = dir.join(if *allow {
                "devices.allow"
            } else {
                "devices.deny"
            });
            std::fs::write(&file, line)
                .map_err(|e| err!("write {} ({line}): {e}", file.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = remove(&dir);
        return Err(e);
    }
    Ok(Some(dir))
}

/// [`IMPLICIT_ALLOW`] as OCI rules (for the v2 program).
fn implicit_rules() -> Vec<LinuxDeviceCgroup> {
    IMPLICIT_ALLOW
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            let (t, num, access) = (
                f.next().unwrap_or("a"),
                f.next().unwrap_or("*:*"),
                f.next().unwrap_or("rwm"),
            );
            let (maj, min) = num.split_once(':').unwrap_or(("*", "*"));
            let n = |x: &str| x.parse::<i64>().ok();
            serde_json::from_value(serde_json::json!({
                "allow": true, "type": t, "major": n(maj), "minor": n(min), "access": access
            }))
            .expect("static rule")
        })
        .collect()
}

/// Move the calling single-threaded process into the v1 device cgroup `dir` (writing "0" to
/// `tasks`: no global lock, see `sandbox::spawn`).
pub fn join_self(dir: &Path) -> Result<()> {
    let file = dir.join("tasks");
    std::fs::write(&file, "0").map_err(|e| err!("write {}: {e}", file.display()))
}

/// Remove the directory (retrying briefly while exiting tasks still hold it).
pub fn remove(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(err!("rmdir {}: {e}", dir.display())),
        }
    }
}

/// The cgroup v2 device filter: OCI device rules compiled to eBPF and attached with
/// BPF_CGROUP_DEVICE.
///
/// Semantics follow the v1 lists the rules were written for: rules apply in order; a
/// wildcard `a *:* rwm` rule resets the default (deny or allow all) and forgets the rules
/// before it; otherwise the last rule that matches a request decides. An allow rule matches
/// when it grants every access bit requested; a deny rule when it names any of them. Without a
/// wildcard rule the default is allow (the v1 root cgroup's).
pub mod bpf {
    use super::{err, Result};
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    const DEV_BLOCK: i32 = 1;
    const DEV_CHAR: i32 = 2;
    const ACC_MKNOD: i32 = 1;
    const ACC_READ: i32 = 2;
    const ACC_WRITE: i32 = 4;

    /// struct bpf_insn
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0xf),
            off,
            imm,
        }
    }
    fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        insn(0x61, dst, src, off, 0) // BPF_LDX | BPF_MEM | BPF_W
    }
    fn and32(dst: u8, imm: i32) -> Insn {
        insn(0x54, dst, 0, 0, imm) // BPF_ALU | BPF_AND | BPF_K
    }
    fn rsh32(dst: u8, imm: i32) -> Insn {
        insn(0x74, dst, 0, 0, imm) // BPF_ALU | BPF_RSH | BPF_K
    }
    fn mov_reg(dst: u8, src: u8) -> Insn {
        insn(0xbf, dst, src, 0, 0) // BPF_ALU64 | BPF_MOV | BPF_X
    }
    fn mov_imm(dst: u8, imm: i32) -> Insn {
        insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
    }
    fn jne(dst: u8, imm: i32, off: i16) -> Insn {
        insn(0x55, dst, 0, off, imm) // BPF_JMP | BPF_JNE | BPF_K
    }
    fn jeq(dst: u8, imm: i32, off: i16) -> Insn {
        insn(0x15, dst, 0, off, imm) // BPF_JMP | BPF_JEQ | BPF_K
    }
    fn exit() -> Insn {
        insn(0x95, 0, 0, 0, 0)
    }

    fn access_bits(r: &LinuxDeviceCgroup) -> i32 {
        let a = r.access().clone().unwrap_or_else(|| "rwm".into());
        let mut bits = 0;
        for c in a.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        bits
    }

    fn is_wildcard_all(r: &LinuxDeviceCgroup) -> bool {
        matches!(r.typ(), None | Some(LinuxDeviceType::A))
            && r.major().is_none_or(|m| m < 0)
            && r.minor().is_none_or(|m| m < 0)
            && access_bits(r) == ACC_READ | ACC_WRITE | ACC_MKNOD
    }

    /// Compile `rules` (already validated by `rule_line`) to a program.
    pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
        let mut default_allow = true;
        let mut start = 0;
        for (i, r) in rules.iter().enumerate() {
            if is_wildcard_all(r) {
                default_allow = r.allow();
                start = i + 1;
            }
        }
        // r2 = type, r3 = requested access, r4 = major, r5 = minor.
        let mut prog = vec![
            ldx_w(2, 1, 0),
            and32(2, 0xffff),
            ldx_w(3, 1, 0),
            rsh32(3, 16),
            ldx_w(4, 1, 4),
            ldx_w(5, 1, 8),
        ];
        // Last matching rule wins: test them last to first, the first match returns.
        for r in rules[start..].iter().rev() {
            // Each check is a conditional jump to the end of this rule's block (`None` offset
            // patched once the block length is known).
            let mut block: Vec<(Insn, bool)> = Vec::new();
            match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => {}
                LinuxDeviceType::B => block.push((jne(2, DEV_BLOCK, 0), true)),
                LinuxDeviceType::C | LinuxDeviceType::U => block.push((jne(2, DEV_CHAR, 0), true)),
                LinuxDeviceType::P => {
                    return Err(err!(
                        "linux.resources.devices: type \"p\" is not a device cgroup type"
                    ))
                }
            }
            let acc = access_bits(r);
            if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
                block.push((mov_reg(6, 3), false));
                if r.allow() {
                    // Every requested bit granted: (req & ~acc) == 0.
                    block.push((and32(6, !acc & 7), false));
                    block.push((jne(6, 0, 0), true));
                } else {
                    // Any requested bit denied: (req & acc) != 0.
                    block.push((and32(6, acc), false));
                    block.push((jeq(6, 0, 0), true));
                }
            }
            if let Some(m) = r.major().filter(|m| *m >= 0) {
                block.push((jne(4, m as i32, 0), true));
            }
            if let Some(m) = r.minor().filter(|m| *m >= 0) {
                block.push((jne(5, m as i32, 0), true));
            }
            block.push((mov_imm(0, i32::from(r.allow())), false));
            block.push((exit(), false));
            let len = block.len();
            for (i, (mut ins, is_jump)) in block.into_iter().enumerate() {
                if is_jump {
                    ins.off = (len - i - 1) as i16;
                }
                prog.push(ins);
            }
        }
        prog.push(mov_imm(0, i32::from(default_allow)));
        prog.push(exit());
        Ok(prog)
    }

    fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> std::io::Result<libc::c_long> {
        // SAFETY: attr points to a properly laid out, initialised union member of `size` bytes.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }

    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
    }

    /// Load the program for `rules`.
    pub fn load(rules: &[LinuxDeviceCgroup]) -> Result<OwnedFd> {
        let prog = compile(rules)?;
        let license = c"Apache-2.0";
        let mut log = vec![0u8; 1 << 16];
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
        };
        let fd = match bpf(
            BPF_PROG_LOAD,
            &attr as *const ProgLoad as *const u8,
            std::mem::size_of::<ProgLoad>(),
        ) {
            Ok(fd) => fd,
            Err(_) => {
                // Again with the verifier's log, for the error message.
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                match bpf(
                    BPF_PROG_LOAD,
                    &attr as *const ProgLoad as *const u8,
                    std::mem::size_of::<ProgLoad>(),
                ) {
                    Ok(fd) => fd,
                    Err(e) => {
                        let text = String::from_utf8_lossy(&log);
                        return Err(err!(
                            "load the device cgroup eBPF program: {e}: {}",
                            text.trim_end_matches('\0').trim()
                        ));
                    }
                }
            }
        };
        // SAFETY: the kernel just returned this descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Compile, load and attach the program to the cgroup v2 directory `dir`. The attachment
    /// lives as long as the cgroup.
    pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let prog = load(rules)?;
        let cg = std::fs::File::open(dir).map_err(|e| err!("open {}: {e}", dir.display()))?;
        let attr = ProgAttach {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
        };
        bpf(
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach as *const u8,
            std::mem::size_of::<ProgAttach>(),
        )
        .map_err(|e| err!("attach the device eBPF program to {}: {e}", dir.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_render_like_the_kernel_wants() {
        let r: LinuxDeviceCgroup =
            serde_json::from_value(serde_json::json!({"allow": false, "access": "rwm"})).unwrap();
        assert_eq!(rule_line(&r).unwrap(), "a *:* rwm");
        let r: LinuxDeviceCgroup = serde_json::from_value(
            serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}),
        )
        .unwrap();
        assert_eq!(rule_line(&r).unwrap(), "c 136:* rwm");
        let r: LinuxDeviceCgroup = serde_json::from_value(
            serde_json::json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "x"}),
        )
        .unwrap();
        assert!(rule_line(&r).is_err());
    }
}
