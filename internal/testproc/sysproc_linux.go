package testproc

import "syscall"

// childProcAttr puts the child in its own process group, so Kill reaches
// everything it started, and has the kernel kill it if the test binary dies
// (a go test timeout panic, say) so no server outlives its test.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
