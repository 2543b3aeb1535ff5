//go:build !unix

package logship

import "io/fs"

// fileIDOf: without inodes a file shipper cannot follow renames; files
// are known by path only.
func fileIDOf(fs.FileInfo) (fileID, bool) { return fileID{}, false }
