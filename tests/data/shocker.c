/* The classic container escapes, tried from inside the build sandbox by
 * tests/sandbox_escape.rs (compiled there with the host's cc, statically).
 * One line per probe: "NAME denied ERRNO-NAME" or "NAME ESCAPED ...".
 * Exit status 0 when every probe was denied, 1 when any escaped.
 * With argument "host", it is run outside the sandbox as the control: then
 * the handle probe must succeed (it proves the probe works). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int escaped = 0;

static void report(const char *name, int rc, int err) {
    if (rc < 0) {
        printf("%s denied %s\n", name, strerrorname_np(err));
    } else {
        printf("%s ESCAPED\n", name);
        escaped = 1;
    }
}

/* open_by_handle_at on inode 2 (the root directory of an ext4 file system:
 * the host's, when the tree lives on the host's root file system). */
static void shocker(const char *marker) {
    struct {
        struct file_handle h;
        unsigned char bytes[8];
    } fh;
    memset(&fh, 0, sizeof fh);
    fh.h.handle_bytes = 8;
    fh.h.handle_type = 1; /* FILEID_INO32_GEN */
    unsigned int ino = 2, gen = 0;
    memcpy(fh.h.f_handle, &ino, 4);
    memcpy(fh.h.f_handle + 4, &gen, 4);
    int mnt = open("/", O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mnt, &fh.h, O_RDONLY | O_DIRECTORY);
    int err = errno;
    report("open_by_handle_at", fd, err);
    if (fd >= 0 && marker) {
        /* What a real escape would do: write to the host. */
        int w = openat(fd, marker, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (w >= 0) {
            printf("wrote host file /%s\n", marker);
            close(w);
        }
    }
    struct {
        struct file_handle h;
        unsigned char bytes[128];
    } got;
    got.h.handle_bytes = 128;
    int mount_id;
    int rc = name_to_handle_at(AT_FDCWD, "/", &got.h, &mount_id, 0);
    err = errno;
    report("name_to_handle_at", rc, err);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "host") == 0) {
        shocker(NULL);
        /* The control passes when the handle probe worked on the host. */
        return escaped ? 0 : 2;
    }
    const char *marker = argc > 1 ? argv[1] : NULL;
    shocker(marker);

    int rc = mknod("/tmp/blockdev", S_IFBLK | 0600, makedev(8, 0));
    report("mknod-block", rc, errno);
    rc = mknod("/tmp/chardev", S_IFCHR | 0666, makedev(1, 1)); /* /dev/mem */
    report("mknod-char", rc, errno);

    int fd = open("/proc/sys/kernel/core_pattern", O_WRONLY);
    int err = errno;
    if (fd >= 0) {
        err = errno;
        rc = (int)write(fd, "|/tmp/x", 7);
        err = errno;
        close(fd);
        report("write-proc-sys", rc, err);
    } else {
        report("write-proc-sys", -1, err);
    }
    fd = open("/proc/sysrq-trigger", O_WRONLY);
    report("open-sysrq-trigger", fd, errno);

    DIR *d = opendir("/sys/block");
    report("list-sys-block", d ? 0 : -1, errno);

    rc = mount("sysfs", "/tmp", "sysfs", 0, NULL);
    report("mount-sysfs", rc, errno);
    rc = mount("/", "/tmp", NULL, MS_BIND, NULL);
    report("mount-bind", rc, errno);
    rc = unshare(CLONE_NEWUSER);
    report("unshare-user", rc, errno);
    rc = (int)syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
    report("keyctl", rc, errno);
    rc = (int)syscall(SYS_bpf, 0, NULL, 0);
    report("bpf", rc, errno);
    rc = (int)syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0);
    report("ptrace", rc, errno);
    rc = (int)syscall(SYS_init_module, NULL, 0, "");
    report("init_module", rc, errno);
    rc = (int)syscall(SYS_kexec_load, 0, 0, NULL, 0);
    report("kexec_load", rc, errno);

    fflush(stdout);
    return escaped;
}
