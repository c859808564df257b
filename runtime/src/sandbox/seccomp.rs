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
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator};
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
        let rules = conditions.into_iter().map(|c| rule(vec![c])).collect::<Result<_, _>>()?;
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
    set.entry(nr).and_modify(|mine| mine.merge(m)).or_insert_with(|| m.clone());
}

/// Whether a program built from `rules` (match → `on_match`, else `on_mismatch`) may refuse
/// seccomp(2) on the running architecture.
fn may_refuse_seccomp(rules: &RuleSet, on_match: &SeccompAction, on_mismatch: &SeccompAction) -> bool {
    let Some(nr) = syscalls::number("seccomp") else { return false };
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

fn build(rules: RuleSet, mismatch: SeccompAction, on_match: SeccompAction, arch: TargetArch) -> Result<Vec<libc::sock_filter>, SeccompError> {
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
        .map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k })
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
    let default = action(profile.default_action(), profile.default_errno_ret(), "defaultAction")?;

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
            let Some(nr) = syscalls::number(name) else { continue };
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
        programs.push((build(any_rule, default, SeccompAction::Allow, arch)?, refuses));
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
    Ok(CompiledFilters { programs: programs.into_iter().map(|(p, _)| p).collect(), flags })
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
                return Err(SeccompError::Install(std::io::Error::from_raw_os_error(libc::EINVAL)));
            };
            let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
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
                return Err(SeccompError::Install(std::io::Error::from_raw_os_error(libc::ESRCH)));
            }
        }
        Ok(())
    }
}
