package server

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
)

// kernelErrnos are the errnos bpf(2) may answer; anything else from the server is a bug.
var kernelErrnos = map[syscall.Errno]bool{
	syscall.EPERM: true, syscall.ENOENT: true, syscall.ESRCH: true, syscall.EINTR: true,
	syscall.EBADF: true, syscall.EAGAIN: true, syscall.ENOMEM: true, syscall.EACCES: true,
	syscall.EFAULT: true, syscall.EBUSY: true, syscall.EEXIST: true, syscall.ENOTDIR: true,
	syscall.EISDIR: true, syscall.EINVAL: true, syscall.EMFILE: true, syscall.ENOSPC: true,
	syscall.E2BIG: true, syscall.ERANGE: true, syscall.ENAMETOOLONG: true,
	syscall.EBADFD: true, syscall.ELOOP: true, syscall.EOPNOTSUPP: true, errENOTSUPP: true,
}

// FuzzBPF feeds arbitrary commands, attr sizes and attr bytes to the server, with pointers that
// may land in the caller's memory (the data region at dataAddr) or anywhere else. The server must
// answer every call with a kernel errno or a result, never panic, and never hand out a file on
// failure.
func FuzzBPF(f *testing.F) {
	seed := func(cmd uint32, attr []byte, data []byte) {
		f.Add(cmd, uint32(len(attr)), attr, data)
	}
	const dataAddr = 0x10000 // where fakeProc.alloc places the first region
	ptrTo := func(off uint64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, dataAddr+off)
		return b
	}
	a := make([]byte, 40)
	copy(a[0:], ptrTo(0))
	binary.LittleEndian.PutUint32(a[16:], 45)
	seed(cmdBTFLoad, a, btfBlob(f))
	seed(cmdBTFGetNextID, make([]byte, 8), nil)
	seed(cmdBTFGetFDByID, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
	a = make([]byte, 20)
	copy(a, ptrTo(0))
	seed(cmdObjGet, a, []byte("/sys/fs/bpf/x\x00"))
	seed(cmdObjPin, a, []byte("/sys/fs/bpf/x\x00"))
	a = make([]byte, 16)
	binary.LittleEndian.PutUint32(a[0:], 3)
	binary.LittleEndian.PutUint32(a[4:], 32)
	copy(a[8:], ptrTo(0))
	seed(cmdObjGetInfo, a, make([]byte, 64))
	for cmd := range uint32(len(commands) + 1) {
		seed(cmd, make([]byte, attrSize), nil)
	}
	seed(cmdProgLoad, nil, nil)

	// One server for every input, as one shim serves every call of a tool.
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, cmd, size uint32, attr, data []byte) {
		p := newFakeProc(t)
		p.alloc(append(data, make([]byte, 64)...)) // at dataAddr
		// The caller holds the kernel's BTF as fd 3, so fd fields can name a real object.
		a := make([]byte, 16)
		a[0] = kernelBTFID
		if _, err := p.bpf(s, cmdBTFGetFDByID, a); err != nil {
			t.Fatal(err)
		}
		addr := p.alloc(attr)
		res, err := s.BPF(p, cmd, addr, size)
		if err != nil {
			var e syscall.Errno
			if !errors.As(err, &e) || !kernelErrnos[e] {
				t.Fatalf("bpf(%d, size %d): error %v is no kernel errno", cmd, size, err)
			}
			if res.File != nil {
				t.Fatalf("bpf(%d): a file came with error %v", cmd, err)
			}
			return
		}
		if res.File != nil {
			res.File.Close()
		}
	})
}
