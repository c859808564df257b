#define _GNU_SOURCE
/* Attempts from inside a slice to lift its disk quota. Each line: NAME ok|ERRNO-NAME.
 * "ok" means the kernel let the slice do it (the test fails on any ok). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/quota.h>

static void report(const char *name, int r) {
    printf("%s %s\n", name, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/";
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) { perror(dir); return 2; }
    struct fsxattr x;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &x) < 0) { perror("FS_IOC_FSGETXATTR"); return 2; }
    printf("projid %u inherit %d\n", x.fsx_projid, !!(x.fsx_xflags & FS_XFLAG_PROJINHERIT));
    /* Only meaningful where a project is set: elsewhere these change nothing. */
    int tagged = x.fsx_projid != 0 || (x.fsx_xflags & FS_XFLAG_PROJINHERIT);
    if (!tagged) {
        printf("set_projid skip\nclear_projinherit_xattr skip\nclear_projinherit_flags skip\n");
    } else {
        /* chattr -p 0: move the directory to project 0 (no quota). */
        struct fsxattr y = x;
        y.fsx_projid = 0;
        report("set_projid", ioctl(fd, FS_IOC_FSSETXATTR, &y));
        /* chattr -P (FS_IOC_FSSETXATTR): new files would get project 0. */
        y = x;
        y.fsx_xflags &= ~FS_XFLAG_PROJINHERIT;
        report("clear_projinherit_xattr", ioctl(fd, FS_IOC_FSSETXATTR, &y));
        /* chattr -P through the old flags ioctl. */
        int flags = 0;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
            flags &= ~FS_PROJINHERIT_FL;
            report("clear_projinherit_flags", ioctl(fd, FS_IOC_SETFLAGS, &flags));
        } else {
            report("clear_projinherit_flags", -1);
        }
    }
    /* setquota -P: raise the project's limit. */
    struct if_dqblk q;
    memset(&q, 0, sizeof q);
    q.dqb_valid = QIF_BLIMITS | QIF_ILIMITS;
    report("quotactl_setquota",
           syscall(SYS_quotactl_fd, fd, QCMD(Q_SETQUOTA, PRJQUOTA), x.fsx_projid, &q));
    report("quotactl_quotaoff", syscall(SYS_quotactl_fd, fd, QCMD(Q_QUOTAOFF, PRJQUOTA), 0, NULL));
    /* Remount the root filesystem without the quota (a superblock reconfiguration). */
    report("remount_noquota", mount(NULL, "/", NULL, MS_REMOUNT, "noquota"));
    report("remount_upper_fs", mount(NULL, "/", "ext4", MS_REMOUNT, "noprjquota"));
    /* A new loop device: through loop-control, or a device node of our own. */
    int ctl = open("/dev/loop-control", O_RDWR);
    report("open_loop_control", ctl);
    if (ctl >= 0) report("loop_ctl_get_free", ioctl(ctl, LOOP_CTL_GET_FREE));
    report("mknod_loop_control", mknod("/lc", S_IFCHR | 0600, makedev(10, 237)));
    report("mknod_loop0", mknod("/l0", S_IFBLK | 0600, makedev(7, 0)));
    return 0;
}
