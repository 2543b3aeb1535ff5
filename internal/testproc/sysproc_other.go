//go:build unix && !linux

package testproc

import "syscall"

// childProcAttr puts the child in its own process group, so Kill reaches
// everything it started.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
