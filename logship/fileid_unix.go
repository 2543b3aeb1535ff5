//go:build unix

package logship

import (
	"io/fs"
	"syscall"
)

// fileIDOf is the device and inode of a file: what a file shipper knows
// it by, whatever it is renamed to.
func fileIDOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev is int32 on some systems
}
