package logship

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// A file shipper (ship_logs) reads lines from log files into its spool
// and records in a checkpoint how far it read each file. The two must
// agree after a kill -9 at any instant, or a restart would ship lines
// twice (checkpoint behind the spool) or never (ahead of it). So the
// checkpoint also records the spool's own position after the lines it
// covers (spoolMark), both are written under the spool's lock with no
// roll in between (appendCommitted), and a spool that opens with a
// checkpoint first cuts off whatever was written past its mark
// (applyCheckpointMark): lines whose checkpoint was never saved are read
// again, from the files, exactly once.
const checkpointName = "checkpoint.json"

// errSpoolFull: on_full refuse_new and the spool is full. The shipper
// waits; the lines stay in the files.
var errSpoolFull = errors.New("log spool full")

// spoolMark is a position in the spool: the file and its size.
type spoolMark struct {
	Base string `json:"base,omitempty"`
	Size int64  `json:"size"`
}

// appendCommitted appends p (whole lines, maybe none) to the current
// file, then calls save with the spool's position after them; no roll
// can come between the two. If save fails the lines are cut off again,
// so that spool and checkpoint still agree; if the write fails nothing
// is kept. Either error is returned, and the caller keeps its lines to
// try again. Unlike Write, nothing is dropped: lines not written stay in
// the files they came from.
func (s *spool) appendCommitted(p []byte, save func(spoolMark) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(p))
	if n > 0 {
		if s.total+n > s.maxBytes && !s.makeRoomLocked(n) {
			return errSpoolFull
		}
		if s.cur == nil {
			if err := s.openLocked(time.Now()); err != nil {
				return err
			}
		}
		if err := s.cutLocked(s.curSize); err != nil {
			return err
		}
		if _, err := s.cur.Write(p); err != nil {
			s.dirty = true
			_ = s.cutLocked(s.curSize)
			return fmt.Errorf("log spool: writing %s: %w", s.curBase+suffixOpen, err)
		}
	}
	mark := s.mark
	if n > 0 {
		mark = spoolMark{Base: s.curBase, Size: s.curSize + n}
	}
	if err := save(mark); err != nil {
		if n > 0 {
			s.dirty = true
			_ = s.cutLocked(s.curSize)
		}
		return err
	}
	s.mark = mark
	if n > 0 {
		s.curSize += n
		s.total += n
		if s.curSize >= s.rollSize {
			s.rollLocked()
		}
		s.metrics.spoolBytes.Set(float64(s.total))
	}
	return nil
}

// cutLocked truncates the current file to size if a failed write or
// save left bytes past it.
func (s *spool) cutLocked(size int64) error {
	if !s.dirty {
		return nil
	}
	if err := s.cur.Truncate(size); err != nil {
		return fmt.Errorf("log spool: cutting %s back to %d bytes: %w", s.curBase+suffixOpen, size, err)
	}
	s.dirty = false
	return nil
}

// applyCheckpointMark runs before a spool with a checkpoint is
// recovered: the file being written at the mark is cut back to it, and
// every other file still being written (started after the mark: lines
// written, checkpoint not saved) is deleted. Not by name order: a clock
// stepped back names a newer file earlier. (The one other way a file
// stays ".open", a failed rename when it was rolled, loses its lines
// here; it is logged.) It returns the mark.
func applyCheckpointMark(dir string) (spoolMark, error) {
	cp, err := readCheckpoint(dir)
	if errors.Is(err, errCorruptCheckpoint) {
		// Nothing can be cut without knowing where: keep the spool as it
		// is, and set the checkpoint aside, so that the shipper reads its
		// files from their start (lines may be shipped twice, none lost).
		_ = os.Rename(filepath.Join(dir, checkpointName), filepath.Join(dir, checkpointName+".corrupt"))
		logger().Error("the file shipper's checkpoint cannot be read; it is set aside and the files are read from their start, so some lines may be shipped twice",
			zap.String("spool", dir), zap.Error(err))
		return spoolMark{}, nil
	}
	if err != nil || cp == nil {
		return spoolMark{}, err
	}
	mark := cp.Spool
	entries, err := os.ReadDir(dir)
	if err != nil {
		return mark, fmt.Errorf("log spool: %v", err)
	}
	for _, e := range entries {
		base, suffix, ok := splitSpoolName(e.Name())
		if !ok || suffix != suffixOpen {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch {
		case base != mark.Base:
			if base < mark.Base {
				logger().Warn("removing a spool file the checkpoint does not cover (the clock went back, or its roll failed)",
					zap.String("spool", dir), zap.String("file", e.Name()))
			}
			if err := os.Remove(path); err != nil {
				return mark, fmt.Errorf("log spool: removing %s, written past the checkpoint: %v", e.Name(), err)
			}
		default:
			fi, err := os.Stat(path)
			if err == nil && fi.Size() > mark.Size {
				err = os.Truncate(path, mark.Size)
			}
			if err != nil {
				return mark, fmt.Errorf("log spool: cutting %s back to its checkpoint: %v", e.Name(), err)
			}
		}
	}
	return mark, nil
}

// checkpoint is what a file shipper saves after every batch: where the
// spool stood, and how far each file was read.
type checkpoint struct {
	Spool spoolMark        `json:"spool"`
	Files []fileCheckpoint `json:"files"`
}

// fileCheckpoint is one file's position. A file is known by device and
// inode, and by a hash of its first bytes, so that a new file on a
// reused inode, or one truncated and written again, is read from the
// start.
type fileCheckpoint struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	Head   string `json:"head"` // hex sha256 of the first HeadLen bytes
	// HeadLen is how many bytes Head covers: up to headBytes.
	HeadLen int `json:"head_len"`
	// Part is the number of the last piece shipped of a line longer than
	// max_line that is not finished yet; 0 when Offset starts a line.
	Part int `json:"part,omitempty"`
	// Gone: the file no longer matches the globs (rotated away); it is
	// read to its end, then forgotten.
	Gone bool `json:"gone,omitempty"`
}

func readCheckpoint(dir string) (*checkpoint, error) {
	data, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file shipper checkpoint: %v", err)
	}
	cp := new(checkpoint)
	if err := json.Unmarshal(data, cp); err != nil {
		return nil, fmt.Errorf("%w %s: %v", errCorruptCheckpoint, filepath.Join(dir, checkpointName), err)
	}
	if cp.Spool.Size < 0 {
		return nil, fmt.Errorf("%w %s: spool size %d", errCorruptCheckpoint, filepath.Join(dir, checkpointName), cp.Spool.Size)
	}
	for _, f := range cp.Files {
		if f.Offset < 0 || f.HeadLen < 0 || f.HeadLen > headBytes || f.Part < 0 {
			return nil, fmt.Errorf("%w %s: file %q: offset %d, head_len %d, part %d", errCorruptCheckpoint, filepath.Join(dir, checkpointName), f.Path, f.Offset, f.HeadLen, f.Part)
		}
	}
	return cp, nil
}

var errCorruptCheckpoint = errors.New("corrupt file shipper checkpoint")

// writeCheckpoint replaces the checkpoint atomically.
func writeCheckpoint(dir string, data []byte) error {
	if err := writeFileAtomic(dir, checkpointName, data); err != nil {
		return fmt.Errorf("file shipper checkpoint: %v", err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data through a rename, so a
// kill -9 leaves the old file or the new one whole: the spool's meta
// and the shipper's checkpoint.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
