#!/usr/bin/env bash
# Every external program the project runs comes from ONE list: deps/packages.txt. This check
# (the first step of `make test`; also `make check-programs`) fails
#   (a) naming the program and its package when a program the list names is not on PATH
#       (the package is not installed, or the list maps the program to the wrong package);
#   (b) naming the program and where it is run when the sources run a program the list does
#       not name: Rust (runtime/, shim/, integration/), shell (scripts/*.sh, images/*/*.sh,
#       bench/*.sh, .ci/run, the Makefile's recipes) and Python (bench/*.py).
#
#   scripts/check-programs.sh [--root DIR] [--list FILE] [--no-path] [--quiet|--show]
#     --show also prints every program found and where (to review what the scan sees)
#   scripts/check-programs.sh --self-test     # the check on fixtures: must pass, must fail
#
# How (b) finds programs is a heuristic (no Rust or shell parser can know what a variable
# holds); it looks where this project puts program names:
#   Rust: Command::new("prog"); the first argument of the runner helpers run/run_ok/run_opt/
#     run_input("prog", ..) and run_in_netns(ns, "prog", ..); which("prog"); an argv literal
#     passed to a call, `f(&["prog", ...])` (first element; words that are sub-commands of
#     our own CLIs or of ctr/runc, listed in NOT_PROGRAMS below, are skipped); `for t in
#     ["a", "b"] { .. which(t) / command -v .. }`; `.args(["60", "prog", ..])` (timeout
#     DURATION PROG); the script of a one-argument `.sh("...")` (a shell on the host).
#   Shell: the first word of every simple command (after assignments and redirections), in
#     $(..), `..`, <(..), `sh -c '..'`, and after exec/command/env/timeout/nohup/unshare/
#     nsenter/setpriv/xargs and find -exec; heredoc bodies are data; builtins, keywords,
#     functions defined in the same file, words with a `/` or an expansion are not programs.
#   Python: argv list literals assigned to argv/cmd or passed to subprocess.*/run().
# Programs that are not Debian's: the Rust toolchain (cargo, rustc: a prerequisite, see
# README) and the project's own binaries. Commands run *inside* a slice or container (busybox
# applets of the image) are not host programs; the forms above do not look at them.
#
# The scan is Python 3 (in the list: python3) because a shell/Rust tokenizer in bash would be
# unreadable; it takes well under a second on this tree.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$REPO
LIST=""
CHECK_PATH=1
QUIET=0
SELF_TEST=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --list) LIST=${2:?--list needs a file}; shift 2 ;;
    --no-path) CHECK_PATH=0; shift ;;
    --quiet) QUIET=1; shift ;;
    --show) QUIET=show; shift ;;
    --self-test) SELF_TEST=1; shift ;;
    -h | --help) sed -n '2,32p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "check-programs: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
LIST=${LIST:-$ROOT/deps/packages.txt}

# --- self-test: the check must fail on fixtures that break each rule, and pass a clean one ---
if [ "$SELF_TEST" = 1 ]; then
  self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
  tmp=$(mktemp -d /tmp/vslice-check-programs.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  failures=0
  # expect NAME EXPECTED-EXIT WORD... -- ARGS: run the check, compare exit code, grep output.
  expect() {
    local name=$1 want=$2 out rc
    shift 2
    local words=()
    while [ "$1" != -- ]; do words+=("$1"); shift; done
    shift
    set +e
    out=$(bash "$self" "$@" 2>&1)
    rc=$?
    set -e
    local ok=1
    [ "$rc" = "$want" ] || ok=0
    for w in "${words[@]}"; do
      grep -qF -- "$w" <<<"$out" || ok=0
    done
    if [ $ok = 1 ]; then
      echo "self-test ok: $name"
    else
      echo "self-test FAILED: $name (exit $rc, wanted $want and ${words[*]}):" >&2
      sed 's/^/  | /' <<<"$out" >&2
      failures=$((failures + 1))
    fi
  }
  mk() { mkdir -p "$(dirname "$1")"; cat >"$1"; }

  # A clean tree: every program it runs is listed, through each form the scanner knows.
  good=$tmp/good
  mk "$good/deps/packages.txt" <<'EOF'
# fixture list
coreutils: cat sleep true timeout
dash: sh
iproute2: ip tc
util-linux: nsenter unshare
socat: socat
tar: tar
sed: sed
grep: grep
containerd: ctr
EOF
  mk "$good/runtime/tests/a.rs" <<'EOF'
// Command::new("commented-out-prog") is a comment, not a call
fn t() {
    let _ = Command::new("ip").args(["link"]).output();
    run_ok("tc", &["qdisc"]);
    run_in_netns(&ns, "ip", &["-batch", "-"], None);
    s.run(&["socat", "-", "tcp:1.2.3.4:80"]);
    env.run(&["exec", "x", "--", "frob-in-slice"]); // argv of our CLI: exec is a sub-command
    let u = Command::new("timeout"); u.args(["60", "ctr", "version"]);
    for tool in ["nsenter", "unshare"] { assert!(which(tool)); }
    a.sh("cat /x | grep y; sleep 1");
    env.sh(&s, "busybox-applet-in-slice");
    let s = "Command::new(\"in-a-string\")";
}
EOF
  mk "$good/scripts/x.sh" <<'EOF'
#!/bin/sh
set -eu
helper() { cat "$1"; }
X=1 tar -cf /dev/null . >/dev/null 2>&1
v=$(sed -n 1p "$0" | grep -c x)
if [ -n "$v" ]; then helper "$0"; fi
case $v in
  'a' | b/c | *x*) true ;;
  *) sleep 0 ;;
esac
cat <<'EOT'
not-a-program here
EOT
unshare -m --propagation private sh -c 'ip link; tc qdisc show' sh
"$VAR" arg   # a variable: not resolvable, not a program
./local-script.sh
EOF
  mk "$good/.ci/run" <<'EOF'
#!/usr/bin/env bash
make deps
EOF
  # `make` is on purpose missing from the good list only in the fixture that tests (b); here:
  echo "make: make" >>"$good/deps/packages.txt"
  expect "clean fixture passes" 0 "no unlisted program" -- --root "$good" --no-path

  # (b) an unlisted program in each language/form fails, named with file:line.
  for form in rust-new rust-argv rust-runner rust-sh sh-pipe sh-subst sh-c sh-wrapper python makefile; do
    bad=$tmp/bad-$form
    rm -rf "$bad"
    cp -a "$good" "$bad"
    mkdir -p "$bad/runtime/src" "$bad/integration/tests" "$bad/images/b" "$bad/bench"
    case $form in
      rust-new) echo 'fn f() { Command::new("frobnicate").status(); }' >"$bad/runtime/tests/b.rs"; where=runtime/tests/b.rs:1 ;;
      rust-argv) printf 'fn f() {\n  s.spawn(&[\n    "frobnicate",\n    "-x",\n  ]);\n}\n' >"$bad/integration/tests/b.rs"; where=integration/tests/b.rs:3 ;;
      rust-runner) echo 'fn f() { run("frobnicate", &[]); }' >"$bad/runtime/src/b.rs"; where=runtime/src/b.rs:1 ;;
      rust-sh) echo 'fn f() { a.sh(&format!("ip link | frobnicate {x}")); }' >"$bad/runtime/tests/b.rs"; where=runtime/tests/b.rs:1 ;;
      sh-pipe) printf '#!/bin/sh\ncat /x | frobnicate -y\n' >"$bad/scripts/b.sh"; where=scripts/b.sh:2 ;;
      sh-subst) printf '#!/bin/sh\nx=$(cat /x; frobnicate)\n' >"$bad/images/b/build.sh"; where=images/b/build.sh:2 ;;
      sh-c) printf "#!/bin/sh\nunshare -m sh -c '\n  ip link\n  frobnicate\n'\n" >"$bad/bench/b.sh"; where=bench/b.sh ;;
      sh-wrapper) printf '#!/bin/sh\ntimeout -s KILL 5 frobnicate\n' >"$bad/scripts/b.sh"; where=scripts/b.sh:2 ;;
      python) printf 'import subprocess\nsubprocess.run(["frobnicate", "-x"])\n' >"$bad/bench/b.py"; where=bench/b.py:2 ;;
      makefile) printf 'all:\n\t@frobnicate --all\n' >"$bad/Makefile"; where=Makefile:2 ;;
    esac
    expect "unlisted program fails ($form)" 1 "frobnicate" "$where" -- --root "$bad" --no-path
  done

  # An `unpacked` package's programs count as listed and are not looked up on PATH.
  unp=$tmp/unpacked
  cp -a "$good" "$unp"
  echo "unpacked vslice-fixture-unpacked: vslice-unpacked-prog" >>"$unp/deps/packages.txt"
  printf '#!/bin/sh\nvslice-unpacked-prog --help\n' >"$unp/scripts/u.sh"
  expect "unpacked program: listed, not looked up on PATH" 0 "no unlisted program" -- --root "$unp"

  # (a) a listed program that is not on PATH fails, naming it and its package.
  nopath=$tmp/nopath
  cp -a "$good" "$nopath"
  echo "vslice-fixture-pkg: vslice-no-such-program" >>"$nopath/deps/packages.txt"
  expect "listed program missing from PATH fails" 1 "vslice-no-such-program" "vslice-fixture-pkg" -- --root "$nopath"

  # A malformed list line is an error naming the line.
  badlist=$tmp/badlist
  cp -a "$good" "$badlist"
  echo "Not A Package: x" >>"$badlist/deps/packages.txt"
  expect "malformed list line fails" 1 "packages.txt:" "Not A Package" -- --root "$badlist" --no-path

  if [ $failures -gt 0 ]; then
    echo "check-programs self-test: $failures failed" >&2
    exit 1
  fi
  echo "check-programs self-test: all passed"
  exit 0
fi

[ -f "$LIST" ] || { echo "check-programs: no package list at $LIST" >&2; exit 1; }

# --- (a) every listed program is on PATH ------------------------------------------------
# Parsed here in bash too (not only in the Python part) so that a missing python3 is itself
# reported by package, like any other program.
if [ "$CHECK_PATH" = 1 ]; then
  missing=()
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    [[ $line == *:* ]] || continue
    # `unpacked PACKAGE: PROGRAMS`: fetched and unpacked by the script that runs them
    # (scripts/v2vm/v2vm.sh), never on PATH
    [[ $line =~ ^unpacked[[:space:]] ]] && continue
    pkg=${line%%:*}
    pkg=${pkg//[[:space:]]/}
    for prog in ${line#*:}; do
      n=$((n + 1))
      command -v "$prog" >/dev/null 2>&1 || missing+=("$prog (Debian package $pkg)")
    done
  done <"$LIST"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "check-programs: FAILED — programs in ${LIST#"$ROOT"/} that are not on PATH (run \`make deps\`):" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
  fi
  [ "$QUIET" != 0 ] || echo "check-programs: all $n listed programs are on PATH"
fi

command -v python3 >/dev/null 2>&1 || {
  echo "check-programs: python3 (Debian package python3) is not on PATH: run \`make deps\`" >&2
  exit 1
}
exec python3 - "$ROOT" "$LIST" "$QUIET" <<'PY'
import os, re, sys

ROOT, LIST, QUIET, SHOW = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[3] == "show"

# Programs that are not Debian packages: the Rust toolchain (a prerequisite) and our own.
NOT_DEBIAN = {"cargo", "rustc", "rustup", "vslice", "vsliced", "vslice-shim", "vslice-runc", "vsh"}
# First words of argv arrays handed to our own CLIs (vslice, vslice-runc) and to ctr/runc
# wrappers in the tests: sub-commands and flags, not programs.
NOT_PROGRAMS = {
    "exec", "rm", "create", "inspect", "run", "state", "delete", "start", "stop", "set",
    "kill", "ps", "pause", "resume", "update", "list", "spec", "task", "tasks", "containers",
    "images", "version", "events", "ls", "enter", "stats", "audit", "checkpoint", "restore",
    "features", "logs", "top", "snapshot", "content", "namespaces", "build", "keys",
}
SHELL_BUILTINS = set("""
: . [ [[ ]] alias bg bind break builtin caller cd command compgen complete compopt continue
declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history
jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return set
shift shopt source suspend test times trap true type typeset ulimit umask unalias unset wait
""".split())
SHELL_KEYWORDS = set("""
if then else elif fi case esac for select while until do done in function time { } ! coproc
""".split())
# Wrappers that run their argument as a program: name -> options that take a separate value.
WRAPPERS = {
    "exec": {"-a"}, "command": set(), "nohup": set(), "nice": {"-n"}, "setsid": set(),
    "env": {"-u", "-C", "-S", "--unset", "--chdir"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"},
    "unshare": {"--propagation", "--setgroups", "--map-user", "--map-group", "-S", "-G",
                "-R", "-w", "--root", "--wd", "--setuid", "--setgid", "--map-users",
                "--map-groups"},
    "nsenter": {"-t", "--target", "-S", "-G", "--setuid", "--setgid", "-r", "-w"},
    "setpriv": {"--reuid", "--regid", "--ruid", "--rgid", "--euid", "--egid", "--groups",
                "--inh-caps", "--ambient-caps", "--bounding-set", "--securebits",
                "--selinux-label", "--apparmor-profile"},
    "xargs": {"-n", "-I", "-d", "-P", "-L", "-s", "-E", "-a"},
    "busybox": set(),
}
PROG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

errors = []


def parse_list(path):
    listed = {}
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            pkg, _, progs = line.partition(":")
            pkg = pkg.strip()
            # `unpacked PACKAGE: PROGRAMS` (not installed: scripts/v2vm/v2vm.sh unpacks it)
            pkg = re.sub(r"^unpacked\s+", "", pkg)
            if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", pkg):
                errors.append(f"{os.path.relpath(path, ROOT)}:{no}: {raw.strip()!r}: "
                              "expected `package: program ...` with a Debian package name")
                continue
            for p in progs.split():
                listed.setdefault(p, pkg)
    return listed


# ---------------------------------------------------------------------------------------
# Shell
class Sh:
    """A small shell lexer: yields (kind, value, line) with kind 'w' (word; value None when
    it holds an expansion that makes it unresolvable), 'op' (operators and newlines).
    Command substitutions inside words are scanned as scripts of their own."""

    OPS = ["&&", "||", ";;", "<<-", "<<<", "<<", ">>", "&>", ">&", "<&", ">|", "<>",
           ";", "&", "|", "(", ")", "<", ">", "\n"]

    def __init__(self, text, line0, found):
        self.t, self.i, self.line, self.found = text, 0, line0, found
        self.heredocs = []

    def sub(self, start, end, line):
        scan_shell(self.t[start:end], line, self.found)

    def match_paren(self, i):
        """i is just after '$(' or '<(': index of the matching ')'."""
        depth, t = 1, self.t
        while i < len(t):
            c = t[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                j = t.find("'", i + 1)
                i = len(t) if j < 0 else j + 1
                continue
            if c == '"':
                i = self.skip_dq(i + 1, scan=False)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return i
            i += 1
        return len(t)

    def skip_brace(self, i, scan=True):
        """i is just after '${': index after the matching '}'; scans $(...) inside
        (${X:-$(cmd)})."""
        t, depth = self.t, 1
        while i < len(t):
            if t.startswith("$(", i) and not t.startswith("$((", i):
                e = self.match_paren(i + 2)
                if scan:
                    self.sub(i + 2, e, self.line)
                i = e + 1
                continue
            if t.startswith("${", i):
                depth += 1
                i += 2
                continue
            if t[i] == "\\":
                i += 2
                continue
            if t[i] == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return i

    def skip_dq(self, i, scan=True):
        """i is just after an opening '"': index after the closing one; scans $(...) unless
        called only to skip over the string."""
        t = self.t
        while i < len(t):
            c = t[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                return i + 1
            if t.startswith("${", i):
                i = self.skip_brace(i + 2, scan)
                continue
            if t.startswith("$((", i):
                i = self.match_paren(i + 3) + 2
                continue
            if t.startswith("$(", i):
                e = self.match_paren(i + 2)
                if scan:
                    self.sub(i + 2, e, self.line + t.count("\n", 0, i) - t.count("\n", 0, self.i))
                i = e + 1
                continue
            if c == "`":
                e = t.find("`", i + 1)
                e = len(t) if e < 0 else e
                if scan:
                    self.sub(i + 1, e, self.line)
                i = e + 1
                continue
            i += 1
        return i

    def tokens(self):
        t = self.t
        n = len(t)
        while self.i < n:
            c = t[self.i]
            if c == "\n":
                yield ("op", "\n", self.line)
                self.line += 1
                self.i += 1
                # heredoc bodies follow the line that opened them: data, not commands
                for delim, strip in self.heredocs:
                    while self.i < n:
                        e = t.find("\n", self.i)
                        e = n if e < 0 else e
                        body = t[self.i:e]
                        self.i = e + 1
                        self.line += 1
                        if (body.lstrip("\t") if strip else body) == delim:
                            break
                self.heredocs = []
                continue
            if c in " \t":
                self.i += 1
                continue
            if c == "\\" and t.startswith("\\\n", self.i):
                self.i += 2
                self.line += 1
                continue
            if c == "#":
                e = t.find("\n", self.i)
                self.i = n if e < 0 else e
                continue
            if t.startswith("((", self.i):
                # arithmetic command: no programs
                depth, j = 0, self.i
                while j < n:
                    if t[j] == "(":
                        depth += 1
                    elif t[j] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                self.line += t.count("\n", self.i, j)
                self.i = j + 1
                yield ("w", None, self.line)
                continue
            if t.startswith("<(", self.i) or t.startswith(">(", self.i):
                e = self.match_paren(self.i + 2)
                self.sub(self.i + 2, e, self.line)
                self.line += t.count("\n", self.i, e)
                self.i = e + 1
                yield ("w", None, self.line)
                continue
            op = next((o for o in self.OPS if t.startswith(o, self.i)), None)
            if op and op != "\n":
                self.i += len(op)
                if op in ("<<", "<<-"):
                    m = re.match(r"\s*(['\"]?)([A-Za-z_0-9]+)\1", t[self.i:])
                    if m:
                        self.heredocs.append((m.group(2), op == "<<-"))
                        self.i += m.end()
                        yield ("op", op, self.line)
                        yield ("w", m.group(2), self.line)
                        continue
                yield ("op", op, self.line)
                continue
            # a word
            start_line = self.line
            buf, plain, lit = [], True, None
            while self.i < n:
                c = t[self.i]
                if c in " \t\n;&|()<>":
                    break
                if c == "\\":
                    buf.append(t[self.i + 1:self.i + 2])
                    self.i += 2
                    continue
                if c == "'":
                    e = t.find("'", self.i + 1)
                    e = n if e < 0 else e
                    lit = t[self.i + 1:e]
                    buf.append(lit)
                    self.line += lit.count("\n")
                    self.i = e + 1
                    continue
                if c == '"':
                    j = self.skip_dq(self.i + 1)
                    inner = t[self.i + 1:j - 1]
                    if "$" in inner or "`" in inner:
                        plain = False
                    lit = inner
                    buf.append(inner)
                    self.line += inner.count("\n")
                    self.i = j
                    continue
                if c == "$":
                    plain = False
                    if t.startswith("$((", self.i):
                        self.i = self.match_paren(self.i + 3) + 2
                    elif t.startswith("$(", self.i):
                        e = self.match_paren(self.i + 2)
                        self.sub(self.i + 2, e, self.line)
                        self.line += t.count("\n", self.i, e)
                        self.i = e + 1
                    elif t.startswith("${", self.i):
                        self.i = self.skip_brace(self.i + 2)
                    else:
                        self.i += 1
                    continue
                if c == "`":
                    plain = False
                    e = t.find("`", self.i + 1)
                    e = n if e < 0 else e
                    self.sub(self.i + 1, e, self.line)
                    self.i = e + 1
                    continue
                buf.append(c)
                self.i += 1
            yield ("w", "".join(buf) if plain else None, start_line)


SEPARATORS = {"&&", "||", ";", "&", "|", "\n", "(", ";;"}
REDIRS = {"<", ">", ">>", "&>", ">&", "<&", ">|", "<>", "<<<", "<<", "<<-"}


FUNCS = set()  # shell functions defined in the file being scanned (set per file)


def shell_functions(text):
    return set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", text, re.M)) | \
        set(re.findall(r"^\s*function\s+([A-Za-z_][\w-]*)", text, re.M))


def scan_shell(text, line0, found):
    """Record (program, line) for every command word in the shell text."""
    toks = list(Sh(text, line0, found).tokens())
    funcs = FUNCS | shell_functions(text)
    at_cmd = True
    mode = None  # None | "for" (skip to do) | "case-word" | "pattern" | "[[" | "args"
    case_depth = 0
    i = 0
    while i < len(toks):
        kind, val, line = toks[i]
        if kind == "op":
            if val in REDIRS:
                i += 2  # the operator and its target
                continue
            if mode == "pattern":
                if val == ")":
                    mode, at_cmd = None, True
                i += 1
                continue
            if val == ";;":
                mode, at_cmd = ("pattern" if case_depth else None), True
            elif val in SEPARATORS:
                # inside `for ... do`, `case WORD in` and `[[ ]]`, separators start nothing
                if mode == "args":
                    mode = None
                if mode is None:
                    at_cmd = True
            elif val == ")":
                mode, at_cmd = None, False
            i += 1
            continue
        # a word
        if mode == "pattern":
            if val == "esac":
                case_depth -= 1
                mode = "args"
            i += 1
            continue
        if mode == "for":
            if val == "do":
                mode, at_cmd = None, True
            i += 1
            continue
        if mode == "case-word":
            if val == "in":
                mode = "pattern"
            i += 1
            continue
        if mode == "[[":
            if val == "]]":
                mode = "args"
            i += 1
            continue
        if not at_cmd:
            i += 1
            continue
        if val is None:
            mode, at_cmd = "args", False
            i += 1
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=", val):
            i += 1  # assignment before a command (or alone)
            if val.endswith("=") and i < len(toks) and toks[i][:2] == ("op", "("):
                # an array, a=(x y): its words are data
                while i < len(toks) and toks[i][:2] != ("op", ")"):
                    i += 1
                i += 1
            continue
        if val in ("then", "do", "else", "elif", "if", "while", "until", "!", "{", "}", "time",
                   "fi", "done", "coproc"):
            i += 1
            continue
        if val == "esac":
            case_depth -= 1
            mode, at_cmd = "args", False
            i += 1
            continue
        if val in ("for", "select"):
            mode = "for"
            i += 1
            continue
        if val == "case":
            case_depth += 1
            mode = "case-word"
            i += 1
            continue
        if val == "[[":
            mode, at_cmd = "[[", False
            i += 1
            continue
        if val == "function":
            i += 2
            continue
        # function definition `name() {`
        if i + 2 < len(toks) and toks[i + 1][:2] == ("op", "(") and toks[i + 2][:2] == ("op", ")"):
            i += 3
            continue
        i = command(toks, i, funcs, found)
        mode, at_cmd = "args", False
    return found


def command(toks, i, funcs, found):
    """toks[i] is a command word: record it (and what wrappers run); return the next index."""
    kind, val, line = toks[i]
    name = val
    if name in funcs or name in SHELL_BUILTINS - {"exec", "command"}:
        return i + 1
    if "/" in name or not PROG_RE.match(name):
        return i + 1
    if name not in ("exec", "command"):
        found.append((name, line))
    args = []
    j = i + 1
    while j < len(toks) and not (toks[j][0] == "op" and toks[j][1] in SEPARATORS | {")"}):
        if toks[j][0] == "op" and toks[j][1] in REDIRS:
            j += 2
            continue
        args.append(toks[j])
        j += 1
    # find DIR ... -exec PROG
    if name == "find":
        for k, a in enumerate(args[:-1]):
            if a[1] in ("-exec", "-execdir", "-ok") and args[k + 1][1]:
                sub = args[k + 1]
                if PROG_RE.match(sub[1]) and sub[1] not in SHELL_BUILTINS:
                    found.append((sub[1], sub[2]))
    # sh -c 'SCRIPT' / bash -c 'SCRIPT'
    if name in ("sh", "bash", "dash"):
        for k, a in enumerate(args[:-1]):
            if a[1] == "-c" or (a[1] and re.fullmatch(r"-[a-z]*c", a[1])):
                if args[k + 1][1] is not None:
                    scan_shell(args[k + 1][1], args[k + 1][2], found)
                break
    if name in WRAPPERS:
        if name == "command" and args and args[0][1] in ("-v", "-V"):
            return j
        takes = WRAPPERS[name]
        k = 0
        dur = name == "timeout"
        while k < len(args):
            a = args[k][1]
            if a is None:
                return j
            if a == "--":
                k += 1
                break
            if a.startswith("-") and a != "-":
                k += 2 if (a in takes) else 1
                continue
            if name == "env" and "=" in a:
                k += 1
                continue
            if dur:
                dur = False
                k += 1
                continue
            break
        if k < len(args) and args[k][1] is not None:
            # re-run the command logic on the wrapped program (handles sh -c, nesting)
            sub = [("w", args[k][1], args[k][2])] + [("w", a[1], a[2]) for a in args[k + 1:]]
            command(sub, 0, funcs, found)
    return j


# ---------------------------------------------------------------------------------------
# Rust
RUST_TOKEN = re.compile(r"""
    (?P<line>//[^\n]*)
  | (?P<block>/\*.*?\*/)
  | (?<![\w])b?r(?P<hashes>\#*)"(?P<raw>.*?)"(?P=hashes)
  | b?"(?P<str>(?:[^"\\]|\\.)*)"
  | (?P<char>'(?:\\.[^'\n]*|[^\\'\n])')
""", re.S | re.X)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", '"': '"', "'": "'", "\\": "\\"}


def unescape(s):
    s = re.sub(r"\\\n\s*", "", s)  # a line continuation drops the newline and indentation
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(1)), s)


def rust_strings(text):
    """Code with comments removed and every string literal replaced by ` S<n> ` (newlines
    kept, so positions map to lines); a list of (value, line) for the literals."""
    out, strs = [], []
    pos, line = 0, 1
    for m in RUST_TOKEN.finditer(text):
        out.append(text[pos:m.start()])
        line += text.count("\n", pos, m.start())
        tok = m.group(0)
        nl = tok.count("\n")
        if m.group("line") is not None or m.group("block") is not None:
            out.append("\n" * nl)
        elif m.group("char") is not None:
            out.append(" C ")
        else:
            val = m.group("raw") if m.group("raw") is not None else unescape(m.group("str"))
            strs.append((val, line))
            out.append(f" S{len(strs) - 1} " + "\n" * nl)
        line += nl
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), strs


def line_of(code, pos):
    return code.count("\n", 0, pos) + 1


def matching(code, i, open_c, close_c):
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_c:
            depth += 1
        elif code[j] == close_c:
            depth -= 1
            if depth == 0:
                return j
    return len(code)


def scan_rust(text, argv_arrays):
    code, strs = rust_strings(text)
    found = []
    S = r"\s*S(\d+)\s*"

    def lit(m, g=1):
        return strs[int(m.group(g))]

    for pat in (r"Command::new\(" + S + r"\)",
                r"(?<![\w.:])(?:run|run_ok|run_opt|run_input)\(" + S + ",",
                r"(?<![\w.])run_in_netns\(\s*[^,;]+," + S + ",",
                r"(?<![\w.])which\(" + S + r"\)",
                # timeout DURATION PROG
                r"\.args\(\s*&?\[\s*S(\d+)\s*," + S):
        for m in re.finditer(pat, code):
            if pat.startswith(r"\.args"):
                if re.fullmatch(r"\d+(\.\d+)?[smhd]?", lit(m)[0]):
                    found.append(lit(m, 2))
                continue
            found.append(lit(m))
    # argv literal passed to a call in test/bench code: f(&["prog", ...]), x.f(["prog", ..])
    # (library code runs programs only through Command::new and the runner helpers above;
    # its string arrays are data)
    for m in re.finditer(r"(\b\w+)\(\s*&?\[" + S + r"(?!\s*\.)", code if argv_arrays else ""):
        fn = m.group(1)
        if fn in ("args", "extend", "extend_from_slice", "json", "contains", "parse",
                  "assert_eq", "assert_ne", "matches", "format", "eq", "push", "join",
                  "iter", "from", "concat"):
            continue
        v = lit(m, 2)
        if v[0] in NOT_PROGRAMS or v[0].startswith("-"):
            continue
        found.append(v)
    # for t in ["a", "b"] { ... which(t) / command -v ... }
    for m in re.finditer(r"\bfor\s+\w+\s+in\s+\[((?:\s*S\d+\s*,?)+)\]\s*\{", code):
        body = code[m.end() - 1:matching(code, m.end() - 1, "{", "}") + 1]
        body_strs = [strs[int(k)][0] for k in re.findall(r"S(\d+)", body)]
        if "which(" in body or any("command -v" in s for s in body_strs):
            found += [strs[int(k)] for k in re.findall(r"S(\d+)", m.group(1))]
    # one-argument .sh("script") / .sh(&format!("script", ..)): a shell on the host
    for m in re.finditer(r"\.sh\(\s*&?(?:format!\()?" + S + r"(\)|,)", code):
        before = code[m.start():m.start(1)]
        if before.count("(") >= 1 and "," not in before:
            val, l0 = lit(m)
            scan_shell(re.sub(r"\{[^{}]*\}", "X", val), l0, found)
    return found


# ---------------------------------------------------------------------------------------
# Python
def scan_python(text):
    found = []
    for m in re.finditer(
            r"(?:\b(?:argv|cmd)\s*=\s*|subprocess\.\w+\(\s*|(?<![\w.])run\(\s*)\[\s*[\"']([^\"']+)[\"']",
            text):
        found.append((m.group(1), line_of(text, m.start(1))))
    return found


# ---------------------------------------------------------------------------------------
# Makefile: recipe lines are shell, with $(VAR) from the Makefile's own assignments.
def scan_makefile(text):
    vars_ = {}
    for m in re.finditer(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", text, re.M):
        vars_[m.group(1)] = m.group(2).strip()
    found = []
    lines = text.split("\n")
    k = 0
    while k < len(lines):
        if not lines[k].startswith("\t"):
            k += 1
            continue
        start = k
        rec = lines[k][1:]
        while rec.endswith("\\") and k + 1 < len(lines):
            k += 1
            rec = rec[:-1] + " " + lines[k].lstrip("\t")
        rec = re.sub(r"^[@+-]+", "", rec.strip())
        for _ in range(5):  # nested $(VAR)s, as make expands them
            rec = re.sub(r"\$\((\w+)\)", lambda m: vars_.get(m.group(1), "${" + m.group(1) + "}"), rec)
        rec = rec.replace("$$", "$")
        scan_shell(rec, start + 1, found)
        k += 1
    return found


def files():
    skip = {"target", ".git", "node_modules"}
    for top in ("runtime", "shim", "integration"):
        for d, dirs, fs in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if x not in skip]
            for f in fs:
                if f.endswith(".rs"):
                    yield "rust", os.path.join(d, f)
    for d in ("scripts", "images", "bench"):
        for dpath, dirs, fs in os.walk(os.path.join(ROOT, d)):
            for f in fs:
                p = os.path.join(dpath, f)
                if f.endswith(".sh"):
                    yield "shell", p
                elif f.endswith(".py"):
                    yield "python", p
    if os.path.exists(os.path.join(ROOT, ".ci/run")):
        yield "shell", os.path.join(ROOT, ".ci/run")
    if os.path.exists(os.path.join(ROOT, "Makefile")):
        yield "make", os.path.join(ROOT, "Makefile")


listed = parse_list(LIST)
unlisted = {}
scanned = 0
for kind, path in sorted(files()):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    scanned += 1
    if kind == "rust":
        rel_ = os.path.relpath(path, ROOT).split(os.sep)
        found = scan_rust(text, "tests" in rel_ or "examples" in rel_ or rel_[:2] == ["integration", "src"])
    elif kind == "shell":
        FUNCS = shell_functions(text)
        found = scan_shell(text, 1, [])
        FUNCS = set()
    elif kind == "python":
        found = scan_python(text)
    else:
        found = scan_makefile(text)
    rel = os.path.relpath(path, ROOT)
    for prog, line in found:
        if SHOW:
            print(f"{prog}\t{rel}:{line}")
        if prog in listed or prog in NOT_DEBIAN or not PROG_RE.match(prog):
            continue
        unlisted.setdefault(prog, []).append(f"{rel}:{line}")

if unlisted:
    errors.append(f"programs run by the sources but not in {os.path.relpath(LIST, ROOT)} "
                  "(add `package: program` lines):")
    for prog in sorted(unlisted):
        where = unlisted[prog]
        more = f" (+{len(where) - 3} more)" if len(where) > 3 else ""
        errors.append(f"  {prog}: run at {', '.join(where[:3])}{more}")
if errors:
    print("check-programs: FAILED", file=sys.stderr)
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1)
if not QUIET:
    print(f"check-programs: scanned {scanned} files; no unlisted program "
          f"({len(listed)} programs listed)")
PY
