//! Seccomp: OCI/Docker-format profiles compiled to BPF with seccompiler. OWNED BY THE POLICY
//! HELPER — interface fixed, implementation to be filled in.
//!
//! # How a profile becomes BPF
//!
//! An OCI profile gives every syscall rule its own action; a seccompiler filter has exactly one
//! match action and one mismatch action. vslice therefore compiles a profile into SEVERAL
//! programs and relies on the kernel's rule for stacked filters: every installed program runs,
//! and the result with the highest precedence wins
//! (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW).
//!
//! * the **default program** (only if `defaultAction` is not ALLOW): every syscall/argument
//!   combination that ANY rule matches → ALLOW, everything else → `defaultAction`;
//! * one **action program** per distinct non-ALLOW rule action (`ERRNO(1)` and `ERRNO(38)` are
//!   distinct): the rules with that action → the action, everything else → ALLOW.
//!
//! A call that no rule matches gets `defaultAction` (default program) and ALLOW from all others;
//! a call matched by rules of one action A gets ALLOW from the default program and A from A's
//! program; ALLOW rules only widen the default program's match set, so an allow-rule with
//! argument conditions under a non-allow default allows exactly the calls whose arguments match.
//!
//! Where this differs from libseccomp (runc, crun), only for profiles whose rules overlap:
//! * a call matched by rules with DIFFERENT actions gets the most restrictive of them. libseccomp
//!   instead lets a rule without argument conditions override conditional rules for the same
//!   syscall (so "allow X" + "errno X if arg0==1" is "allow X" there, "errno if arg0==1" here),
//!   and rejects identical rules with different actions;
//! * two ERRNO rules with different errno values matching the same call: the kernel keeps the
//!   result of the most recently installed program; action programs are installed in the order
//!   their actions first appear in the profile (except that a program that may refuse
//!   seccomp(2) goes last, see below), so normally the errno of the action that appears last;
//! * `SCMP_CMP_MASKED_EQ` with a `valueTwo` that has bits outside the mask never matches in
//!   libseccomp; seccompiler would mask the value, so such a condition is compiled as "never".
//!
//! Argument conditions follow runc: all `args` of one rule must hold (AND), except when two of
//! them name the same argument index — then each condition is its own alternative (OR), as runc
//! does because libseccomp cannot AND two comparisons of one argument. Arguments are compared
//! as 64-bit values, like libseccomp on 64-bit architectures.
//!
//! # Architectures
//!
//! Filters are compiled for the running architecture only (x86_64 or aarch64); architectures
//! listed in the profile are ignored. A syscall made through another ABI (32-bit x86 via
//! `int 0x80`, arm32 compat on aarch64) kills the process: each program checks the audit arch
//! first, and syscall numbers of a foreign ABI would otherwise slip past a denylist. On x86_64
//! an extra program also kills x32-ABI calls (`nr | 0x40000000`), which report the x86_64 audit
//! arch and would bypass every rule of a denylist. 32-bit binaries therefore do not run under a
//! vslice seccomp profile.
//!
//! Syscall names the running architecture does not have (profiles list names of many kernels and
//! architectures) are skipped, like runc does; a profile in which no name at all is known is an
//! error.
//!
//! # Installation order
//!
//! Every program after the first is installed with a seccomp(2) call that already passes through
//! the programs installed before it. Programs that can refuse seccomp(2) itself are therefore
//! installed last; if more than one could, the profile is rejected at compile time.
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

pub mod syscalls;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("seccomp install: {0}")]
    Install(std::io::Error),
}

/// BPF programs compiled ahead of fork, so that installing them in the child allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilters {
    /// Programs in installation order.
    pub programs: Vec<Vec<libc::sock_filter>>,
    /// `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2) with every program (see [`flags`]).
    pub flags: libc::c_ulong,
}

fn profile_err(msg: impl Into<String>) -> SeccompError {
    SeccompError::Profile(msg.into())
}

/// The `SECCOMP_FILTER_FLAG_*` bits for the profile's `flags` (TSYNC, LOG, SPEC_ALLOW).
pub fn flags(profile: &LinuxSeccomp) -> Result<libc::c_ulong, SeccompError> {
    let mut bits = 0;
    for flag in profile.flags().iter().flatten() {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
        };
    }
    Ok(bits)
}

/// The highest errno the kernel passes through (`MAX_ERRNO`); larger values are clamped by it.
const MAX_ERRNO: u32 = 4095;

/// Map an OCI action (plus its errnoRet) to a seccompiler action.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: &str,
) -> Result<SeccompAction, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM as u32);
            if errno > MAX_ERRNO {
                return Err(profile_err(format!(
                    "{what}: errno {errno} out of range (at most {MAX_ERRNO})"
                )));
            }
            SeccompAction::Errno(errno)
        }
        // libseccomp's SCMP_ACT_KILL is the thread-killing action.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace | LinuxSeccompAction::ScmpActNotify => {
            return Err(profile_err(format!(
                "{what}: action {action} is not supported by vslice (no tracer or seccomp agent \
                 is attached to slices); use SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, \
                 SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_LOG or SCMP_ACT_ALLOW"
            )))
        }
    })
}

/// Whether a call that returns `action` is refused (not executed).
fn refuses(action: &SeccompAction) -> bool {
    !matches!(action, SeccompAction::Allow | SeccompAction::Log)
}

/// Which calls of one syscall a rule matches.
#[derive(Debug, Clone)]
enum Matcher {
    /// Every call (no argument conditions).
    Always,
    /// Calls for which one of the rules holds; an empty list matches nothing.
    Any(Vec<SeccompRule>),
}

impl Matcher {
    fn merge(&mut self, other: &Matcher) {
        match (&mut *self, other) {
            (Matcher::Always, _) => {}
            (_, Matcher::Always) => *self = Matcher::Always,
            (Matcher::Any(mine), Matcher::Any(theirs)) => mine.extend(theirs.iter().cloned()),
        }
    }

    fn matches_nothing(&self) -> bool {
        matches!(self, Matcher::Any(rules) if rules.is_empty())
    }
}

/// One OCI argument comparison; `None` if it can never hold.
fn condition(arg: &LinuxSeccompArg, what: &str) -> Result<Option<SeccompCondition>, SeccompError> {
    let index = arg.index();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(arg.value()),
    };
    // For MASKED_EQ, OCI (like libseccomp) puts the mask in `value` and the expected value in
    // `valueTwo`; seccompiler takes the mask in the operator and the expected value separately.
    let value = match op {
        SeccompCmpOp::MaskedEq(mask) => {
            let expected = arg.value_two().unwrap_or(0);
            if expected & !mask != 0 {
                return Ok(None);
            }
            expected
        }
        _ => arg.value(),
    };
    let index = u8::try_from(index)
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| profile_err(format!("{what}: argument index {index} (at most 5)")))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map(Some)
        .map_err(|e| profile_err(format!("{what}: {e}")))
}

/// The matcher for one syscall rule's `args` (runc semantics, see the module comment).
fn matcher(args: Option<&Vec<LinuxSeccompArg>>, what: &str) -> Result<Matcher, SeccompError> {
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => return Ok(Matcher::Always),
    };
    let mut conditions = Vec::with_capacity(args.len());
    let mut never = false;
    for (i, arg) in args.iter().enumerate() {
        match condition(arg, &format!("{what}.args[{i}]"))? {
            Some(c) => conditions.push(c),
            None => never = true,
        }
    }
    let mut indices: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indices.sort_unstable();
    let repeated = indices.windows(2).any(|w| w[0] == w[1]);
    let rule = |conds: Vec<SeccompCondition>| {
        SeccompRule::new(conds).map_err(|e| profile_err(format!("{what}: {e}")))
    };
    if repeated {
        // Each condition on its own: the call matches if any holds (a never-holding one drops).
        let rules = conditions
            .into_iter()
            .map(|c| rule(vec![c]))
            .collect::<Result<_, _>>()?;
        Ok(Matcher::Any(rules))
    } else if never {
        Ok(Matcher::Any(Vec::new()))
    } else {
        Ok(Matcher::Any(vec![rule(conditions)?]))
    }
}

/// Syscall number → matcher, for one program.
type RuleSet = BTreeMap<i64, Matcher>;

fn add(set: &mut RuleSet, nr: i64, m: &Matcher) {
    if m.matches_nothing() {
        return;
    }
    set.entry(nr)
        .and_modify(|mine| mine.merge(m))
        .or_insert_with(|| m.clone());
}

/// Whether a program built from `rules` (match → `on_match`, else `on_mismatch`) may refuse
/// seccomp(2) on the running architecture.
fn may_refuse_seccomp(
    rules: &RuleSet,
    on_match: &SeccompAction,
    on_mismatch: &SeccompAction,
) -> bool {
    let Some(nr) = syscalls::number("seccomp") else {
        return false;
    };
    match rules.get(&nr) {
        None => refuses(on_mismatch),
        Some(Matcher::Always) => refuses(on_match),
        Some(Matcher::Any(_)) => refuses(on_match) || refuses(on_mismatch),
    }
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    if !syscalls::SUPPORTED {
        return Err(profile_err(format!(
            "architecture {} is not supported (x86_64 and aarch64 are)",
            std::env::consts::ARCH
        )));
    }
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| profile_err(e.to_string()))
}

fn build(
    rules: RuleSet,
    mismatch: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let rules = rules
        .into_iter()
        .map(|(nr, m)| match m {
            Matcher::Always => (nr, Vec::new()),
            Matcher::Any(rules) => (nr, rules),
        })
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, on_match, arch)
        .map_err(|e| profile_err(e.to_string()))?;
    let program = BpfProgram::try_from(filter).map_err(|e| profile_err(e.to_string()))?;
    Ok(program
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

// Classic BPF opcodes used by the hand-written x32 guard (linux/bpf_common.h).
/// `BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)`
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00)`
const BPF_JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP (0x05) | BPF_JGE (0x30) | BPF_K (0x00)`
const BPF_JMP_JGE_K: u16 = 0x35;
/// `BPF_RET (0x06) | BPF_K (0x00)`
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, arch)`.
const SECCOMP_DATA_ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, nr)`.
const SECCOMP_DATA_NR: u32 = 0;
/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `__X32_SYSCALL_BIT`: x32-ABI syscalls are the x86_64 arch with this bit set in `nr`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A program that kills x32-ABI calls (and, like every program here, foreign-arch calls).
fn x32_guard() -> Vec<libc::sock_filter> {
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        ins(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        ins(BPF_JMP_JGE_K, 1, 0, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// Compile an OCI seccomp profile for the running architecture.
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledFilters, SeccompError> {
    let arch = target_arch()?;
    let flags = flags(profile)?;
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultAction",
    )?;

    // Every rule, as (action, syscall number, matcher); actions in order of first appearance.
    let mut actions: Vec<SeccompAction> = Vec::new();
    let mut by_action: Vec<RuleSet> = Vec::new();
    let mut any_rule = RuleSet::new();
    let (mut named, mut known) = (0usize, 0usize);
    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        let what = format!("syscalls[{i}]");
        let act = action(rule.action(), rule.errno_ret(), &what)?;
        let m = matcher(rule.args().as_ref(), &what)?;
        let slot = match actions.iter().position(|a| *a == act) {
            Some(slot) => slot,
            None => {
                actions.push(act.clone());
                by_action.push(RuleSet::new());
                actions.len() - 1
            }
        };
        for name in rule.names() {
            named += 1;
            // Unknown names are skipped: profiles list syscalls of many kernels and arches.
            let Some(nr) = syscalls::number(name) else {
                continue;
            };
            known += 1;
            add(&mut any_rule, nr, &m);
            add(&mut by_action[slot], nr, &m);
        }
    }
    if named > 0 && known == 0 {
        return Err(profile_err(format!(
            "none of the {named} syscall names is known on {}",
            std::env::consts::ARCH
        )));
    }

    // (program, may refuse seccomp(2))
    let mut programs: Vec<(Vec<libc::sock_filter>, bool)> = Vec::new();
    if default != SeccompAction::Allow {
        let refuses = may_refuse_seccomp(&any_rule, &SeccompAction::Allow, &default);
        programs.push((
            build(any_rule, default, SeccompAction::Allow, arch)?,
            refuses,
        ));
    }
    for (act, rules) in actions.into_iter().zip(by_action) {
        if act == SeccompAction::Allow || rules.is_empty() {
            continue;
        }
        let refuses = may_refuse_seccomp(&rules, &act, &SeccompAction::Allow);
        programs.push((build(rules, SeccompAction::Allow, act, arch)?, refuses));
    }
    if programs.iter().filter(|(_, r)| *r).count() > 1 {
        return Err(profile_err(
            "more than one action refuses seccomp(2) itself; vslice installs one program per \
             action and could not install the later ones",
        ));
    }
    if arch == TargetArch::x86_64 && !programs.is_empty() {
        programs.insert(0, (x32_guard(), false));
    }
    // Stable: the program that may refuse seccomp(2) goes last, the others keep their order.
    programs.sort_by_key(|(_, refuses)| *refuses);
    Ok(CompiledFilters {
        programs: programs.into_iter().map(|(p, _)| p).collect(),
        flags,
    })
}

impl CompiledFilters {
    /// Install in the calling thread via seccomp(SECCOMP_SET_MODE_FILTER). Does NOT set
    /// no_new_privs (the caller decides; slices keep setuid binaries working).
    ///
    /// Without no_new_privs the kernel requires CAP_SYS_ADMIN in the caller's user namespace
    /// (EACCES otherwise). Allocates nothing, so it may run in a child forked from a
    /// multi-threaded process. On error some programs may already be installed: the caller must
    /// not exec the slice process then.
    pub fn install(&self) -> Result<(), SeccompError> {
        for program in &self.programs {
            let Ok(len) = u16::try_from(program.len()) else {
                return Err(SeccompError::Install(std::io::Error::from_raw_os_error(
                    libc::EINVAL,
                )));
            };
            let fprog = libc::sock_fprog {
                len,
                filter: program.as_ptr().cast_mut(),
            };
            // SAFETY: fprog points to a live, correctly sized program for the whole call; the
            // kernel copies it.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                    self.flags,
                    &fprog as *const libc::sock_fprog,
                )
            };
            if rc < 0 {
                return Err(SeccompError::Install(std::io::Error::last_os_error()));
            }
            if rc > 0 {
                // With TSYNC, a positive result is the id of a thread that could not be
                // synchronised (io::Error::other would allocate).
                return Err(SeccompError::Install(std::io::Error::from_raw_os_error(
                    libc::ESRCH,
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction as Act;
    use std::path::Path;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn shipped(name: &str) -> LinuxSeccomp {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/seccomp")
            .join(name);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn nr(name: &str) -> u32 {
        syscalls::number(name).unwrap_or_else(|| panic!("{name} unknown")) as u32
    }

    /// A classic-BPF interpreter for the instructions seccompiler and `x32_guard` emit, run on a
    /// `struct seccomp_data`.
    fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                8 | 12 => 0,
                o if (16..64).contains(&o) && o % 4 == 0 => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load from offset {o}"),
            }
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            match i.code {
                0x20 => acc = word(i.k),
                0x54 => acc &= i.k,
                0x05 => pc += i.k as usize,
                0x15 | 0x25 | 0x35 => {
                    let hit = match i.code {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += if hit { i.jt } else { i.jf } as usize;
                }
                0x06 => return i.k,
                c => panic!("opcode {c:#x} not interpreted"),
            }
        }
    }

    /// What the kernel returns for a call through a stack of filters: it runs all of them and
    /// keeps the lowest action (as signed), the most recently installed one on ties.
    fn eval_arch(f: &CompiledFilters, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut ret = libc::SECCOMP_RET_ALLOW;
        for p in f.programs.iter().rev() {
            let cur = run(p, arch, nr, args);
            let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
            if action(cur) < action(ret) {
                ret = cur;
            }
        }
        ret
    }

    fn eval(f: &CompiledFilters, name: &str, args: [u64; 6]) -> u32 {
        eval_arch(f, native_audit_arch(), nr(name), args)
    }

    fn native_audit_arch() -> u32 {
        if cfg!(target_arch = "x86_64") {
            AUDIT_ARCH_X86_64
        } else {
            183 | 0x8000_0000 | 0x4000_0000
        }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }
    const NOARGS: [u64; 6] = [0; 6];

    #[test]
    fn every_name_in_the_shipped_profiles_is_known() {
        for file in ["default.json", "strict.json"] {
            for rule in shipped(file).syscalls().iter().flatten() {
                for name in rule.names() {
                    assert!(
                        syscalls::number(name).is_some(),
                        "{file}: {name} unknown on this arch"
                    );
                }
            }
        }
    }

    #[test]
    fn syscall_table_is_consistent() {
        let all: Vec<_> = syscalls::all().collect();
        assert!(all.len() > 300, "{}", all.len());
        for (i, (name, nr)) in all.iter().enumerate() {
            assert!(
                !all[..i].iter().any(|(n, _)| n == name),
                "{name} listed twice"
            );
            assert!(
                !all[..i].iter().any(|(_, x)| x == nr),
                "number {nr} ({name}) listed twice"
            );
        }
        assert_eq!(syscalls::number("getpid"), Some(libc::SYS_getpid));
        assert_eq!(syscalls::number("seccomp"), Some(libc::SYS_seccomp));
        assert_eq!(syscalls::number("clone3"), Some(435));
        assert_eq!(syscalls::number("no_such_call"), None);
    }

    #[test]
    fn default_profile_compiles_and_denies_its_list() {
        let f = compile(&shipped("default.json")).unwrap();
        // x86_64: the x32 guard + one ERRNO(EPERM) program; aarch64: just the latter.
        let expected = if cfg!(target_arch = "x86_64") { 2 } else { 1 };
        assert_eq!(f.programs.len(), expected);
        assert_eq!(f.flags, 0);
        for name in [
            "init_module",
            "kexec_load",
            "keyctl",
            "add_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "open_by_handle_at",
            "syslog",
            "io_uring_setup",
            "settimeofday",
        ] {
            assert_eq!(eval(&f, name, NOARGS), errno(libc::EPERM), "{name}");
        }
        for name in [
            "getpid",
            "read",
            "mount",
            "unshare",
            "reboot",
            "ptrace",
            "clone",
            "clone3",
            "adjtimex",
            "seccomp",
            "personality",
        ] {
            assert_eq!(eval(&f, name, NOARGS), ALLOW, "{name}");
        }
    }

    #[test]
    fn strict_profile_compiles_with_clone_conditions() {
        let f = compile(&shipped("strict.json")).unwrap();
        // (x32 guard) + ERRNO(EPERM) + ERRNO(ENOSYS)
        let expected = if cfg!(target_arch = "x86_64") { 3 } else { 2 };
        assert_eq!(f.programs.len(), expected);
        for name in [
            "keyctl",
            "mount",
            "unshare",
            "setns",
            "ptrace",
            "reboot",
            "open_tree",
        ] {
            assert_eq!(eval(&f, name, NOARGS), errno(libc::EPERM), "{name}");
        }
        assert_eq!(eval(&f, "clone3", NOARGS), errno(libc::ENOSYS));
        // fork()/pthread_create() flags pass, any namespace flag is refused.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(eval(&f, "clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            eval(&f, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            ALLOW
        );
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            let flags = (flag | libc::SIGCHLD) as u64;
            assert_eq!(
                eval(&f, "clone", [flags, 0, 0, 0, 0, 0]),
                errno(libc::EPERM),
                "{flag:#x}"
            );
        }
        assert_eq!(eval(&f, "getpid", NOARGS), ALLOW);
    }

    #[test]
    fn foreign_abis_are_killed() {
        let f = compile(&shipped("default.json")).unwrap();
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        // i386 getpid (20) through int 0x80, on any arch-checking program.
        assert_eq!(
            eval_arch(&f, AUDIT_ARCH_I386, 20, NOARGS),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        if cfg!(target_arch = "x86_64") {
            // x32 keyctl: x86_64 audit arch, x32 bit set.
            let x32_keyctl = X32_SYSCALL_BIT | nr("keyctl");
            assert_eq!(eval(&f, "keyctl", NOARGS), errno(libc::EPERM));
            assert_eq!(
                eval_arch(&f, AUDIT_ARCH_X86_64, x32_keyctl, NOARGS),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn unsupported_actions_are_errors() {
        for (act, text) in [
            ("SCMP_ACT_NOTIFY", "SCMP_ACT_NOTIFY"),
            ("SCMP_ACT_TRACE", "SCMP_ACT_TRACE"),
        ] {
            let p = profile(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["getpid"], "action": "{act}"}}]}}"#
            ));
            let err = compile(&p).unwrap_err().to_string();
            assert!(err.contains("syscalls[0]") && err.contains(text), "{err}");
            let p = profile(&format!(r#"{{"defaultAction": "{act}"}}"#));
            let err = compile(&p).unwrap_err().to_string();
            assert!(err.contains("defaultAction") && err.contains(text), "{err}");
        }
        // Not an action at all: refused when the JSON is read.
        assert!(
            serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).is_err()
        );
        let p = profile(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(compile(&p).unwrap_err().to_string().contains("70000"));
    }

    #[test]
    fn unknown_names_are_skipped_but_not_all_of_them() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_call", "keyctl"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        let f = compile(&p).unwrap();
        assert_eq!(eval(&f, "keyctl", NOARGS), errno(libc::EPERM));
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_call", "vm86old_nope"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        let err = compile(&p).unwrap_err().to_string();
        assert!(err.contains("none of the 2 syscall names"), "{err}");
        // No rules at all is fine: an allow-everything profile installs nothing.
        let f = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
        assert!(f.programs.is_empty());
    }

    #[test]
    fn actions_and_precedence() {
        let p = profile(
            r#"{
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
            "syscalls": [
                {"names": ["getpid", "getppid", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getuid"], "action": "SCMP_ACT_KILL"},
                {"names": ["getgid"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["geteuid"], "action": "SCMP_ACT_TRAP"},
                {"names": ["getegid"], "action": "SCMP_ACT_LOG"},
                {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22}
            ]}"#,
        );
        let f = compile(&p).unwrap();
        assert_eq!(eval(&f, "getpid", NOARGS), ALLOW);
        assert_eq!(eval(&f, "exit_group", NOARGS), ALLOW);
        assert_eq!(eval(&f, "getuid", NOARGS), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(eval(&f, "getgid", NOARGS), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(eval(&f, "geteuid", NOARGS), libc::SECCOMP_RET_TRAP);
        assert_eq!(eval(&f, "getegid", NOARGS), libc::SECCOMP_RET_LOG);
        assert_eq!(eval(&f, "gettid", NOARGS), errno(38));
        // Allowed and denied: the more restrictive result wins.
        assert_eq!(eval(&f, "getppid", NOARGS), errno(22));
        // Not named: the default action with its errno.
        assert_eq!(eval(&f, "read", NOARGS), errno(13));
        // The default program refuses seccomp(2), so it is installed last.
        let last = f.programs.last().unwrap();
        assert_eq!(
            run(last, native_audit_arch(), nr("seccomp"), NOARGS),
            errno(13)
        );
        for p in &f.programs[..f.programs.len() - 1] {
            assert_eq!(run(p, native_audit_arch(), nr("seccomp"), NOARGS), ALLOW);
        }
    }

    #[test]
    fn two_actions_refusing_seccomp_are_rejected() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["seccomp"], "action": "SCMP_ACT_KILL_PROCESS"}]}"#,
        );
        assert!(
            compile(&p).is_ok(),
            "seccomp is a rule of the default program: allowed there"
        );
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["seccomp"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        let err = compile(&p).unwrap_err().to_string();
        assert!(
            err.contains("more than one action refuses seccomp(2)"),
            "{err}"
        );
    }

    #[test]
    fn argument_conditions() {
        let p = profile(
            r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 3, "op": "SCMP_CMP_LT"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 4096, "op": "SCMP_CMP_LE"}]},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_GT"}, {"index": 0, "value": 1, "op": "SCMP_CMP_GE"},
                          {"index": 3, "value": 7, "op": "SCMP_CMP_NE"}]},
                {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 6, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mprotect"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#,
        );
        let f = compile(&p).unwrap();
        let eperm = errno(libc::EPERM);
        let a = |a0: u64, a1: u64, a2: u64, a3: u64| [a0, a1, a2, a3, 0, 0];
        // Two rules for one syscall: either may match.
        assert_eq!(eval(&f, "personality", a(0, 0, 0, 0)), ALLOW);
        assert_eq!(eval(&f, "personality", a(0xffff_ffff, 0, 0, 0)), ALLOW);
        assert_eq!(eval(&f, "personality", a(0x0040000, 0, 0, 0)), eperm);
        // 64-bit comparison: the upper half counts.
        assert_eq!(eval(&f, "personality", a(1 << 32, 0, 0, 0)), eperm);
        // Conditions on different arguments: AND.
        assert_eq!(eval(&f, "socket", a(2, 1, 0, 0)), ALLOW);
        assert_eq!(eval(&f, "socket", a(2, 3, 0, 0)), eperm);
        assert_eq!(eval(&f, "socket", a(10, 1, 0, 0)), eperm);
        // Two conditions on one argument: OR (runc).
        assert_eq!(eval(&f, "kill", a(1, 9, 0, 0)), ALLOW);
        assert_eq!(eval(&f, "kill", a(1, 15, 0, 0)), ALLOW);
        assert_eq!(eval(&f, "kill", a(1, 1, 0, 0)), eperm);
        assert_eq!(eval(&f, "read", a(0, 0, 4096, 0)), ALLOW);
        assert_eq!(eval(&f, "read", a(0, 0, 4097, 0)), eperm);
        assert_eq!(eval(&f, "write", a(1, 0, 1, 0)), ALLOW);
        assert_eq!(eval(&f, "write", a(0, 0, 1, 0)), eperm);
        assert_eq!(eval(&f, "write", a(1, 0, 0, 0)), eperm);
        assert_eq!(eval(&f, "write", a(1, 0, 1, 7)), eperm);
        // MASKED_EQ: value = mask, valueTwo = expected.
        assert_eq!(eval(&f, "mmap", a(0, 0, 3, 0)), ALLOW);
        assert_eq!(eval(&f, "mmap", a(0, 0, 6, 0)), eperm);
        // valueTwo outside the mask never matches (libseccomp semantics).
        assert_eq!(eval(&f, "mprotect", a(0, 0, 2, 0)), eperm);
        assert_eq!(eval(&f, "mprotect", a(0, 0, 3, 0)), eperm);

        let bad = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        let err = compile(&bad).unwrap_err().to_string();
        assert!(
            err.contains("syscalls[0].args[0]: argument index 6"),
            "{err}"
        );
    }

    #[test]
    fn flags_are_passed_through() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        let f = compile(&p).unwrap();
        assert_eq!(
            f.flags,
            libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_TSYNC"]}"#,
        );
        assert_eq!(flags(&p).unwrap(), libc::SECCOMP_FILTER_FLAG_TSYNC);
        assert_eq!(Act::ScmpActAllow, p.default_action());
    }

    // ---- against the real kernel, in forked children only ----

    /// Run `child` in a forked child (which must only make raw syscalls: the test process is
    /// multi-threaded) and return its wait status.
    fn in_child(child: impl FnOnce() -> i32) -> libc::c_int {
        // SAFETY: the child calls only async-signal-safe code (raw syscalls, install(), which
        // does not allocate) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = child();
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        loop {
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                return status;
            }
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EINTR)
            );
        }
    }

    /// Assert that the child exited with 0; otherwise its exit code is the number of the
    /// check (a numbered `return` in the child) that failed.
    fn assert_child_ok(status: libc::c_int) {
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: status {status:#x}"
        );
        let code = libc::WEXITSTATUS(status);
        assert_eq!(
            code, 0,
            "check {code} failed in the child (see its numbered returns)"
        );
    }

    /// In the child, before installing: no core dumps from SIGSYS (not dumpable also stops a
    /// piped core_pattern, which ignores RLIMIT_CORE); and without root (so without
    /// CAP_SYS_ADMIN) the kernel only accepts filters under no_new_privs.
    fn child_prepare() {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: raw syscalls with valid arguments.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            if libc::geteuid() != 0 {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            }
        }
    }

    /// (return value, errno) of a raw syscall.
    fn sys(nr: libc::c_long, a: [libc::c_long; 5]) -> (libc::c_long, i32) {
        // SAFETY: the tests only make calls whose pointer arguments are NULL or invalid on
        // purpose (the kernel checks them).
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) };
        let e = if r < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        (r, e)
    }

    // Harmless probes: an unknown keyctl command (EOPNOTSUPP without a filter) and
    // perf_event_open with a NULL attribute (EFAULT without a filter).
    const KEYCTL_BOGUS: libc::c_long = 9999;
    fn probe_keyctl() -> (libc::c_long, i32) {
        sys(libc::SYS_keyctl, [KEYCTL_BOGUS, 0, 0, 0, 0])
    }
    fn probe_perf() -> (libc::c_long, i32) {
        sys(libc::SYS_perf_event_open, [0, 0, -1, -1, 0])
    }

    #[test]
    fn kernel_without_filter_the_probes_do_not_give_eperm() {
        // The control: proves the EPERMs below come from the filter.
        let status = in_child(|| {
            if probe_keyctl() != (-1, libc::EOPNOTSUPP) {
                return 1;
            }
            if probe_perf() != (-1, libc::EFAULT) {
                return 2;
            }
            0
        });
        assert_child_ok(status);
    }

    #[test]
    fn kernel_default_profile_denies_with_eperm() {
        let f = compile(&shipped("default.json")).unwrap();
        let status = in_child(|| {
            child_prepare();
            if f.install().is_err() {
                return 10;
            }
            if probe_keyctl() != (-1, libc::EPERM) {
                return 11;
            }
            if probe_perf() != (-1, libc::EPERM) {
                return 12;
            }
            // Allowed calls still work.
            // SAFETY: getpid has no arguments.
            let (pid, e) = sys(libc::SYS_getpid, [0; 5]);
            if pid != unsafe { libc::getpid() } as libc::c_long || e != 0 {
                return 13;
            }
            // A second, nested filter can still be installed (seccomp(2) is allowed).
            if f.install().is_err() {
                return 14;
            }
            0
        });
        assert_child_ok(status);
    }

    #[test]
    fn kernel_errno_ret_and_argument_conditions() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        let f = compile(&p).unwrap();
        let status = in_child(|| {
            child_prepare();
            if f.install().is_err() {
                return 20;
            }
            if sys(libc::SYS_getppid, [0; 5]) != (-1, 38) {
                return 21;
            }
            // getpriority(PRIO_PROCESS, 0) passes, getpriority(PRIO_PGRP, 0) gets EACCES.
            let (r, e) = sys(libc::SYS_getpriority, [libc::PRIO_PROCESS as _, 0, 0, 0, 0]);
            if r < 0 || e != 0 {
                return 22;
            }
            if sys(libc::SYS_getpriority, [libc::PRIO_PGRP as _, 0, 0, 0, 0]) != (-1, libc::EACCES)
            {
                return 23;
            }
            0
        });
        assert_child_ok(status);
    }

    #[test]
    fn kernel_default_deny_profile_and_kill() {
        // An allowlist: seccomp(2) itself is not allowed, so the default program must be
        // installed last for install() to succeed at all.
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
            {"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
        );
        let f = compile(&p).unwrap();
        assert!(f.programs.len() >= 3);
        let status = in_child(|| {
            child_prepare();
            if f.install().is_err() {
                return 30;
            }
            if sys(libc::SYS_getuid, [0; 5]) != (-1, libc::EPERM) {
                return 31;
            }
            if sys(libc::SYS_gettid, [0; 5]) != (-1, 38) {
                return 32;
            }
            if sys(libc::SYS_getpid, [0; 5]).0 <= 0 {
                return 33;
            }
            0
        });
        assert_child_ok(status);

        let status = in_child(|| {
            child_prepare();
            if f.install().is_err() {
                return 40;
            }
            sys(libc::SYS_getppid, [0; 5]);
            41
        });
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "expected death by SIGSYS, status {status:#x}"
        );
    }
}
