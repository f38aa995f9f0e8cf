/* progdump: an LD_PRELOAD library for the verifier's tests. It logs every BPF_PROG_LOAD a stock
 * tool makes through libc's syscall(), with the maps its instructions name and the kernel's
 * answer, to the file $EBPFU_PROGDUMP. Built and used only by runtime/verifier's tests. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long (*real_syscall)(long, ...);

static long sys_bpf(int cmd, void *attr, unsigned size)
{
	return real_syscall(SYS_bpf, cmd, attr, size);
}

static void hex(FILE *f, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", b[i]);
}

static void dump_map(FILE *f, int fd)
{
	struct bpf_map_info info;
	union bpf_attr a;
	memset(&info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = (uint64_t)(uintptr_t)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a, sizeof(a)) != 0)
		return;
	fprintf(f, "map fd=%d type=%u key=%u value=%u max=%u flags=%u frozen=", fd, info.type,
		info.key_size, info.value_size, info.max_entries, info.map_flags);
	if (info.type == BPF_MAP_TYPE_ARRAY && info.max_entries == 1 && (info.map_flags & BPF_F_RDONLY_PROG) &&
	    info.value_size <= 1 << 20) {
		static unsigned char value[1 << 20];
		uint32_t key = 0;
		memset(&a, 0, sizeof(a));
		a.map_fd = fd;
		a.key = (uint64_t)(uintptr_t)&key;
		a.value = (uint64_t)(uintptr_t)value;
		if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a, sizeof(a)) == 0)
			hex(f, value, info.value_size);
	}
	fprintf(f, "\n");
}

static void dump_prog(const union bpf_attr *a, long ret, int err)
{
	const char *path = getenv("EBPFU_PROGDUMP");
	if (!path)
		return;
	FILE *f = fopen(path, "a");
	if (!f)
		return;
	const struct bpf_insn *insns = (const struct bpf_insn *)(uintptr_t)a->insns;
	for (unsigned i = 0; i < a->insn_cnt; i++)
		if (insns[i].code == (BPF_LD | BPF_IMM | BPF_DW) && (insns[i].src_reg == 1 || insns[i].src_reg == 2))
			dump_map(f, insns[i].imm);
	const char *license = (const char *)(uintptr_t)a->license;
	int gpl = license && (strstr(license, "GPL") != NULL);
	fprintf(f, "prog type=%u eat=%u gpl=%d ret=%d errno=%d name=%.16s insns=", a->prog_type,
		a->expected_attach_type, gpl, ret < 0 ? -1 : 0, ret < 0 ? err : 0, a->prog_name);
	hex(f, insns, (size_t)a->insn_cnt * 8);
	fprintf(f, "\n");
	fclose(f);
}

long syscall(long number, ...)
{
	va_list ap;
	long a1, a2, a3, a4, a5, a6;
	if (!real_syscall)
		real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	va_start(ap, number);
	a1 = va_arg(ap, long);
	a2 = va_arg(ap, long);
	a3 = va_arg(ap, long);
	a4 = va_arg(ap, long);
	a5 = va_arg(ap, long);
	a6 = va_arg(ap, long);
	va_end(ap);
	long ret = real_syscall(number, a1, a2, a3, a4, a5, a6);
	if (number == SYS_bpf && a1 == BPF_PROG_LOAD) {
		int err = errno;
		dump_prog((const union bpf_attr *)a2, ret, err);
		errno = err;
	}
	return ret;
}
