/* The classic container escapes, tried from inside the build sandbox by
 * tests/sandbox_escape.rs (compiled there with the host's cc, statically).
 * Arguments: a marker file name (what an escape would create at the host's
 * root) and a port the test listens on at the host's 127.0.0.1.
 * One line per probe: "NAME denied ERRNO-NAME" or "NAME ESCAPED ...".
 * Exit status 0 when every probe was denied, 1 when any escaped.
 * With argument "host", it is run outside the sandbox as the control: then
 * the handle probe must succeed (it proves the probe works).
 * Built for x86-64 it also tries the x32 ABI (the x32 bit on a native
 * number); built with -m32 (an i386 binary, as multiarch images run) it
 * also makes raw `int $0x80` calls: a harmless one that must work and the
 * handle escape that must be denied. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
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

#if defined(__i386__)
/* A raw i386 system call through the 32-bit entry: -errno on failure. */
static long int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

static void i386_probes(void) {
    long pid = int80(20 /* getpid */, 0, 0, 0);
    if (pid == (long)getpid()) {
        printf("int80-getpid allowed %ld\n", pid);
    } else {
        printf("int80-getpid FAILED %ld\n", pid);
        escaped = 1;
    }
    struct {
        struct file_handle h;
        unsigned char bytes[8];
    } fh;
    memset(&fh, 0, sizeof fh);
    fh.h.handle_bytes = 8;
    fh.h.handle_type = 1;
    unsigned int ino = 2;
    memcpy(fh.h.f_handle, &ino, 4);
    int mnt = open("/", O_RDONLY | O_DIRECTORY);
    long rc = int80(342 /* open_by_handle_at */, mnt, (long)&fh.h, O_RDONLY | O_DIRECTORY);
    report("int80-open_by_handle_at", rc < 0 ? -1 : 0, (int)-rc);
}
#endif

#if defined(__x86_64__)
/* The x32 ABI: a native number with __X32_SYSCALL_BIT. */
static void x32_probes(void) {
    long rc = syscall(0x40000000L | SYS_getpid);
    report("x32-getpid", (int)rc, errno);
    rc = syscall(0x40000000L | SYS_open_by_handle_at, AT_FDCWD, NULL, 0);
    report("x32-open_by_handle_at", (int)rc, errno);
}
#endif

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "host") == 0) {
        shocker(NULL);
        /* The control passes when the handle probe worked on the host. */
        return escaped ? 0 : 2;
    }
    /* The probes really escape where nothing stops them (they mount over
     * /tmp, rewrite core_pattern, make device nodes): refuse to run them
     * outside a user namespace, i.e. on the host by mistake. */
    FILE *map = fopen("/proc/self/uid_map", "r");
    unsigned long inside = 1, outside = 1, count = 0;
    if (!map || fscanf(map, "%lu %lu %lu", &inside, &outside, &count) != 3 ||
        (inside == 0 && outside == 0 && count == 4294967295UL)) {
        printf("refusing: not in a user namespace (run it in the sandbox, or with `host`)\n");
        return 3;
    }
    fclose(map);
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

    /* The network: nothing but the sandbox's own loopback (TEST-NET-1). */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "192.0.2.1", &to.sin_addr);
    rc = s < 0 ? -1 : connect(s, (struct sockaddr *)&to, sizeof to);
    report("connect-external", rc, errno);
    /* The host's loopback: a port the test listens on there (argv[2]). */
    if (argc > 2) {
        int t = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in lo = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
        inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
        rc = t < 0 ? -1 : connect(t, (struct sockaddr *)&lo, sizeof lo);
        report("connect-host-loopback", rc, errno);
    }

#if defined(__i386__)
    printf("arch i386\n");
    i386_probes();
#elif defined(__x86_64__)
    printf("arch x86_64\n");
    x32_probes();
#endif
    fflush(stdout);
    return escaped;
}
