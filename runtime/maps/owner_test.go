package maps

import (
	"os"
	"os/exec"
	"testing"
)

func TestAlive(t *testing.T) {
	if !Alive(ProcessOwner()) || !Alive(uint32(os.Getpid())) {
		t.Error("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	if Alive(uint32(cmd.Process.Pid)) {
		t.Errorf("reaped process %d alive", cmd.Process.Pid)
	}
	// A zombie (exited, not reaped) is dead too.
	z := exec.Command("true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	for i := 0; i < 1000 && Alive(uint32(z.Process.Pid)); i++ {
		exec.Command("true").Run() // give it time to exit
	}
	if Alive(uint32(z.Process.Pid)) {
		t.Errorf("zombie %d alive", z.Process.Pid)
	}
	if Alive(0) || Alive(SharedOwner) {
		t.Error("owner 0 alive")
	}
}
