package server

import (
	"encoding/binary"
	"syscall"
	"testing"
)

// TestTaskFDQueryCopy: the name is cut to the caller's room with a NUL (ENOSPC), buf_len
// reports its whole length, and the other fields are written, as bpf_task_fd_query_copy does.
func TestTaskFDQueryCopy(t *testing.T) {
	const name = "/tmp/probed"
	for _, tc := range []struct {
		room    uint32
		want    string
		wantErr error
	}{
		{0, "", nil},
		{4, "/tm\x00", syscall.ENOSPC},
		{uint32(len(name)), name[:len(name)-1] + "\x00", syscall.ENOSPC},
		{uint32(len(name) + 1), name + "\x00", nil},
	} {
		p := newFakeProc(t)
		buf := make([]byte, 64)
		ubuf := p.alloc(buf)
		raw := make([]byte, 48)
		binary.LittleEndian.PutUint32(raw[tfqBufLen:], tc.room)
		binary.LittleEndian.PutUint64(raw[tfqBuf:], ubuf)
		addr := p.alloc(raw)
		a, err := readAttr(p, addr, uint32(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		err = taskFDQueryCopy(&call{p: p, attr: a}, 7, fdTypeUretprobe, name, 0x1234, 0)
		if err != tc.wantErr {
			t.Errorf("room %d: %v, want %v", tc.room, err, tc.wantErr)
		}
		if got := string(buf[:len(tc.want)]); got != tc.want || (len(tc.want) == 0 && buf[0] != 0) {
			t.Errorf("room %d: buf %q, want %q", tc.room, got, tc.want)
		}
		le := binary.LittleEndian
		if le.Uint32(raw[tfqBufLen:]) != uint32(len(name)) || le.Uint32(raw[tfqProgID:]) != 7 ||
			le.Uint32(raw[tfqFDType:]) != fdTypeUretprobe || le.Uint64(raw[tfqProbeOffset:]) != 0x1234 {
			t.Errorf("room %d: attr % x", tc.room, raw)
		}
	}
}
