//go:build unix

package logship

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive flock on path, so two processes never
// share a spool directory. The kernel releases it when the process
// dies, kill -9 included.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%v)", errSpoolLocked, err)
	}
	return f, nil
}
