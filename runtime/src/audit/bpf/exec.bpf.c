// SPDX-License-Identifier: GPL-2.0
// The exec log's kernel half (src/audit/exec_bpf.rs loads it): on every successful execve on
// the host, find the slice from the task's cgroup and, for a slice's process only, send one
// event (time, pids, parent, uid, path, argv) to a ring buffer.
//
// Written against no kernel header: the few kernel structs are declared with
// preserve_access_index, so clang records each field access by name and the loader
// (aya) rewrites the offsets from the running kernel's BTF (CO-RE). Helpers are called by
// their stable numbers (include/uapi/linux/bpf.h). GPL: the probe_read helpers are GPL-only.
//
// Attribution is by cgroup, which a slice's root cannot leave: the slice is the cgroup just
// below the slices' parent (`vslice`) among the task's ancestors, in the unified hierarchy
// (cgroup v2) or in one v1 hierarchy (pids) on v1 hosts. Nested cgroups a slice makes are
// walked up.

typedef unsigned long long u64;
typedef unsigned int u32;
typedef int s32;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define CORE __attribute__((preserve_access_index))

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, u32 size, const void *src) = (void *)115;
static u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) = (void *)130;
static u64 (*bpf_ringbuf_query)(void *ringbuf, u64 flags) = (void *)134;
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0

struct kernfs_node {
	u64 id;
} CORE;
struct cgroup;
struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} CORE;
struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
} CORE;
struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp;
} CORE;
struct upid {
	int nr;
	void *ns;
};
struct pid {
	unsigned int level;
	struct upid numbers[1];
} CORE;
struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} CORE;
struct linux_binprm {
	const char *filename;
} CORE;
struct task_struct {
	int tgid;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct css_set *cgroups;
	struct pid *thread_pid;
} CORE;

#define READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

// Set by the loader. `v1_subsys`: the index of the tracked v1 hierarchy's controller in
// css_set.subsys (the line of `pids` in /proc/cgroups), or 0xffffffff for the unified
// hierarchy. `host_pid_level`: the pid namespace level of the loader (0 on a host), so that
// a slice's pid namespace is one below it.
struct config {
	u64 parent_cgid;
	u32 v1_subsys;
	u32 host_pid_level;
};

// Keep in step with exec_bpf.rs (EVENT_HEADER, PATH_BYTES, ARGV_BYTES).
#define PATH_BYTES 256
#define ARGV_BYTES 4096
#define MAX_DEPTH 16
struct event {
	u64 boot_ns;
	u64 slice_cgid;
	u32 pid;
	u32 ppid;
	u32 uid;
	u32 pid_in_slice;
	u32 argv_len;
	u32 argv_full_len;
	char path[PATH_BYTES];
	char argv[ARGV_BYTES];
};

struct {
	__uint(type, 2 /* BPF_MAP_TYPE_ARRAY */);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct config);
} config SEC(".maps");

// Events that found the ring buffer full: counted here, reported by the collector.
struct {
	__uint(type, 6 /* BPF_MAP_TYPE_PERCPU_ARRAY */);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

// An event is built here (it is larger than the 512-byte BPF stack), then only its used
// bytes go to the ring.
struct {
	__uint(type, 6 /* BPF_MAP_TYPE_PERCPU_ARRAY */);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct event);
} scratch SEC(".maps");

struct {
	__uint(type, 27 /* BPF_MAP_TYPE_RINGBUF */);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

// Wake-ups are batched: waking the reader for every record cost more than the record (an
// irq_work and a context switch per exec, tens of microseconds in a VM). A record wakes the
// reader only when WAKE_EVERY_NS have passed since the last wake-up or a lot is queued; the
// reader, after each batch it finds, looks again within 2 x WAKE_EVERY_NS before it sleeps
// without a timeout (audit/execs.rs), so a record written without a wake-up is always found.
// Must match EXEC_WAKE_EVERY in audit/execs.rs.
#define WAKE_EVERY_NS 50000000ULL
#define WAKE_QUEUED_BYTES (1 << 20)
struct {
	__uint(type, 2 /* BPF_MAP_TYPE_ARRAY */);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} woken_at SEC(".maps");

// The raw tracepoint needs no tracefs mount: its arguments are those of
// trace_sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm),
// called after the new program is in place (a failed execve makes no event).
SEC("raw_tracepoint/sched_process_exec")
int vslice_exec(u64 *ctx)
{
	u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->parent_cgid)
		return 0;
	struct task_struct *task = (struct task_struct *)ctx[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];
	struct css_set *cset;
	READ(cset, task->cgroups);
	struct cgroup_subsys_state *css = 0;
	if (cfg->v1_subsys == 0xffffffff) {
		struct cgroup *dfl;
		READ(dfl, cset->dfl_cgrp);
		css = &dfl->self;
	} else {
		READ(css, cset->subsys[cfg->v1_subsys & 15]);
	}
	u64 below = 0, slice = 0;
	for (int i = 0; i < MAX_DEPTH && css; i++) {
		struct cgroup *cg;
		struct kernfs_node *kn;
		u64 id = 0;
		READ(cg, css->cgroup);
		READ(kn, cg->kn);
		READ(id, kn->id);
		if (id == cfg->parent_cgid) {
			slice = below;
			break;
		}
		below = id;
		READ(css, css->parent);
	}
	if (!slice)
		return 0;

	struct event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->slice_cgid = slice;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (u32)bpf_get_current_uid_gid();
	struct task_struct *parent;
	READ(parent, task->real_parent);
	READ(e->ppid, parent->tgid);
	struct pid *tpid;
	unsigned int level = 0;
	READ(tpid, task->thread_pid);
	READ(level, tpid->level);
	u32 want = cfg->host_pid_level + 1;
	e->pid_in_slice = 0;
	if (level >= want && want < 32)
		READ(e->pid_in_slice, tpid->numbers[want].nr);
	const char *filename = 0;
	e->path[0] = 0;
	READ(filename, bprm->filename);
	bpf_probe_read_kernel_str(e->path, PATH_BYTES, filename);

	// argv is what the new program's stack holds: NUL-separated strings between arg_start
	// and arg_end of its mm, cut at ARGV_BYTES.
	struct mm_struct *mm;
	unsigned long start = 0, end = 0;
	READ(mm, task->mm);
	READ(start, mm->arg_start);
	READ(end, mm->arg_end);
	u64 len = end > start ? end - start : 0;
	e->argv_full_len = len;
	if (len > ARGV_BYTES)
		len = ARGV_BYTES;
	e->argv_len = 0;
	if (len > 0 && bpf_probe_read_user(e->argv, len & (ARGV_BYTES * 2 - 1) & 0x1fff, (void *)start) == 0)
		e->argv_len = len;

	u64 size = sizeof(*e) - ARGV_BYTES + e->argv_len;
	if (size > sizeof(*e))
		size = sizeof(*e);
	u64 flags = BPF_RB_NO_WAKEUP;
	u64 *woken = bpf_map_lookup_elem(&woken_at, &zero);
	u64 now = bpf_ktime_get_boot_ns();
	if (!woken || now - *woken >= WAKE_EVERY_NS ||
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKE_QUEUED_BYTES) {
		flags = BPF_RB_FORCE_WAKEUP;
		if (woken)
			*woken = now;
	}
	if (bpf_ringbuf_output(&events, e, size, flags) != 0) {
		u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			*n += 1;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
