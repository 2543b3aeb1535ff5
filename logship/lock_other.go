//go:build !unix

package logship

import "os"

// lockDir opens path; without flock, nothing stops two processes from
// sharing a spool directory on this platform.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
}
