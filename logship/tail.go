package logship

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// A file shipper follows the log files its globs match and appends
// their lines to its spool, from which they are uploaded like the
// entries of an `output s3` log writer. See commit.go for how its
// checkpoint and the spool stay in step.
const (
	// DefaultMaxLine is the longest line shipped as one record; longer
	// lines are split into pieces of at most this many bytes.
	DefaultMaxLine = 64 << 10
	// MaxMaxLine bounds max_line, and with it the shipper's memory.
	MaxMaxLine = 16 << 20
	// tailPoll is how often files are looked at for new lines, and the
	// globs for new files.
	tailPoll = 250 * time.Millisecond
	// headBytes of a file's start identify it (with its inode).
	headBytes = 256
	// readChunk is how much is read at a time.
	readChunk = 1 << 20
	// batchLimit bounds the records of one batch (one commit and
	// checkpoint): room for a whole chunk of ordinary lines once wrapped
	// (about 1.5 times their size), bounded for short lines of a long
	// path, which grow many times over.
	batchLimit = 4 << 20
	// goneGrace: a file that no longer matches the globs (renamed by
	// logrotate, deleted) is read until it has not grown for this long,
	// since the application may still be writing to it until it reopens
	// its log.
	goneGrace = 5 * time.Second
	// tailErrorEvery rate-limits the shipper's error logs.
	tailErrorEvery = 10 * time.Second
)

// compressedSuffixes are names logrotate gives compressed rotations; a
// glob that matches them (app.log*) must not ship their bytes as lines.
var compressedSuffixes = []string{".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"}

// fileID is what a followed file is known by: device and inode.
type fileID struct{ dev, ino uint64 }

// tailConfig is what one file shipper follows and how.
type tailConfig struct {
	dir     string   // the spool directory, which holds the checkpoint
	globs   []string // absolute
	host    string   // in wrapped lines
	maxLine int
	source  string // metrics label
}

// tailer follows the files of one file shipper.
type tailer struct {
	cfg     tailConfig
	sp      *spool
	metrics tailMetrics
	files   map[fileID]*tailFile
	// A change the checkpoint must record although no line was read: a
	// file found, forgotten or truncated.
	changed bool
	buf     []byte // one chunk read from a file
	// The batch: the records read since the last commit, of any number
	// of files, each file's state before the batch (to undo it if the
	// commit fails), and the bytes of files it consumed. One commit per
	// batch, not per file: a checkpoint lists every file.
	out        []byte
	undo       map[*tailFile]tailState
	batchBytes int64
	failed     bool // a commit failed this poll: read no more until the next
	dormant    []fileCheckpoint
	errLog     map[string]time.Time

	stop     chan struct{}
	done     chan struct{}
	stopOnce *sync.Once

	// Reload handover (guarded by tailers.mu): prev is the follower this
	// one took the files from, released that its config stopped.
	prev     *tailer
	released bool
}

// tailFile is one followed file.
type tailFile struct {
	id      fileID
	path    string
	f       *os.File
	offset  int64 // where the next line starts: everything before is in the spool
	headLen int
	headSum [sha256.Size]byte
	// the hash of the tailLen bytes before offset: with the head, what
	// tells logrotate's copy of this file from older copies
	tailLen int
	tailSum [sha256.Size]byte
	part    int // pieces shipped of an unfinished line longer than max_line
	size    int64
	// gone: no longer matched by the globs; read until idle for
	// goneGrace since idleSince.
	gone      bool
	idleSince time.Time
	// prefix of wrapped records after "ts": `,"host":…,"file":…,"line":"`
	wrap []byte
}

func newTailer(cfg tailConfig, sp *spool) *tailer {
	t := &tailer{
		cfg: cfg, sp: sp, metrics: tailMetricsFor(cfg.source),
		buf:    make([]byte, max(readChunk, cfg.maxLine+2)),
		errLog: make(map[string]time.Time),
	}
	t.reset()
	return t
}

// reset readies a tailer to run (again): it takes up the files from the
// checkpoint when it starts.
func (t *tailer) reset() {
	t.files = make(map[fileID]*tailFile)
	t.undo = make(map[*tailFile]tailState)
	t.out, t.batchBytes, t.failed, t.dormant = t.out[:0], 0, false, nil
	t.changed = false
	t.stop, t.done, t.stopOnce = make(chan struct{}), make(chan struct{}), new(sync.Once)
}

// run follows the files until close.
func (t *tailer) run() {
	defer close(t.done)
	defer t.closeFiles()
	t.restore()
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	for {
		t.poll(time.Now())
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

// close stops the tailer and waits for it: what it read is in the
// spool and the checkpoint, whatever instant it stopped at.
func (t *tailer) close() {
	stop := t.stop
	t.stopOnce.Do(func() { close(stop) })
	<-t.done
}

func (t *tailer) stopping() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}

func (t *tailer) closeFiles() {
	for _, tf := range t.files {
		tf.f.Close()
	}
	t.metrics.watched.Set(0)
	t.metrics.lag.Set(0)
}

// restore takes up the files of the checkpoint where it left them: by
// inode, under whatever name it has now (a file logrotate renamed while
// the shipper was stopped is found in the same directory and finished),
// as long as its first bytes are the same.
func (t *tailer) restore() {
	cp, err := readCheckpoint(t.cfg.dir)
	if err != nil {
		t.logError("checkpoint", "reading the checkpoint failed; files are read from their start", err)
	}
	if cp == nil {
		// A checkpoint before the first line: were the process killed
		// between the first batch and its checkpoint, the next start
		// must find one to cut that batch off by.
		if err := t.commit(nil); err != nil {
			t.logError("checkpoint", "writing the first checkpoint failed", err)
		}
		return
	}
	matched := map[fileID]string{}
	for _, path := range t.globMatches() {
		if fi, err := os.Stat(path); err == nil {
			matched[idOf(path, fi)] = path
		}
	}
	for _, fc := range cp.Files {
		id := fileID{dev: fc.Dev, ino: fc.Ino}
		path, ok := matched[id]
		if !ok && !fc.Gone {
			// Still where it was, but no glob of this config matches it
			// (a glob removed, or a reload that added it undone): not
			// followed, but remembered, so that a config that matches it
			// again reads on from here instead of from its start.
			if fi, err := os.Stat(fc.Path); err == nil && idOf(fc.Path, fi) == id {
				t.dormant = append(t.dormant, fc)
				continue
			}
		}
		gone := !ok
		if gone {
			path = findByID(filepath.Dir(fc.Path), id)
		}
		if path == "" {
			logger().Info("a followed file is gone; lines it got after the shipper stopped were not shipped",
				zap.String("file", fc.Path), zap.Int64("offset", fc.Offset))
			t.changed = true
			continue
		}
		tf, err := t.open(path, id)
		if err != nil {
			t.logError(path, "opening a followed log file failed", err)
			continue
		}
		if !tf.resume(fc) {
			t.changed = true
			if gone {
				// Not the file: another one on its reused inode, found
				// under a name the globs do not match.
				tf.f.Close()
				logger().Info("a followed file is gone; lines it got after the shipper stopped were not shipped",
					zap.String("file", fc.Path), zap.Int64("offset", fc.Offset))
				continue
			}
			// Truncated, or another file on a reused inode: from the start.
			logger().Info("a followed file changed while the shipper was stopped (truncated or replaced); reading it from the start",
				zap.String("file", path), zap.Int64("was_at", fc.Offset), zap.Int64("size", tf.size))
			t.metrics.truncations.Inc()
			t.files[id] = tf
			continue
		}
		tf.gone = gone || fc.Gone
		tf.idleSince = time.Now()
		t.files[id] = tf
	}
	t.metrics.watched.Set(float64(len(t.files)))
}

// findByID looks in dir for the file with id (a rotated file's new
// name), or "".
func findByID(dir string, id fileID) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || compressedName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(path); err == nil && idOf(path, fi) == id {
			return path
		}
	}
	return ""
}

// idOf is the file's device and inode (on systems without inodes, a
// hash of its path).
func idOf(path string, fi os.FileInfo) fileID {
	if id, ok := fileIDOf(fi); ok {
		return id
	}
	h := fnv.New64a()
	h.Write([]byte(path))
	return fileID{ino: h.Sum64()}
}

func (t *tailer) globMatches() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range t.cfg.globs {
		paths, _ := filepath.Glob(g) // patterns are checked at provision
		for _, p := range paths {
			if !seen[p] && !compressedName(p) && !inSpool(p) {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// inSpool reports whether path is a file of a log spool (this
// shipper's, another's, an `output s3` writer's): a glob that matches
// one would ship the spooled lines again, forever.
func inSpool(path string) bool {
	if _, _, ok := splitSpoolName(filepath.Base(path)); !ok {
		return false
	}
	for _, marker := range []string{lockName, spoolMetaName} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), marker)); err == nil {
			return true
		}
	}
	return false
}

func compressedName(path string) bool {
	for _, suf := range compressedSuffixes {
		if strings.HasSuffix(path, suf) {
			return true
		}
	}
	return false
}

// open opens path, which must still be the file id.
func (t *tailer) open(path string, id fileID) (*tailFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	if got := idOf(path, fi); got != id {
		f.Close()
		return nil, errors.New("replaced while being opened")
	}
	tf := &tailFile{id: id, path: path, f: f, size: fi.Size()}
	tf.setWrap(t.cfg.host)
	return tf, nil
}

func (tf *tailFile) setWrap(host string) {
	w := append([]byte(nil), `,"host":`...)
	w = appendJSONString(w, []byte(host))
	w = append(w, `,"file":`...)
	w = appendJSONString(w, []byte(tf.path))
	tf.wrap = append(w, `,"line":`...)
}

// headIs reports whether the file's first n bytes hash to want.
func (tf *tailFile) headIs(n int, want []byte) bool {
	sum, ok := hashAt(tf.f, 0, n)
	return ok && bytes.Equal(sum[:], want)
}

// poll finds new and rotated files and ships what every file got.
func (t *tailer) poll(now time.Time) {
	t.scan(now)
	// Rotated files first: logrotate's rename + create leaves the end of
	// the old file to finish before the new one starts.
	files := make([]*tailFile, 0, len(t.files))
	for _, tf := range t.files {
		files = append(files, tf)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].gone != files[j].gone {
			return files[i].gone
		}
		return files[i].path < files[j].path
	})
	t.failed = false
	for _, tf := range files {
		if t.stopping() || t.failed {
			break
		}
		t.ship(tf, now)
	}
	if !t.failed && !t.stopping() {
		t.forgetFinished(now)
	}
	t.flush()
	var lag int64
	for _, tf := range t.files {
		lag += tf.size - tf.offset
	}
	t.metrics.watched.Set(float64(len(t.files)))
	t.metrics.lag.Set(float64(lag))
}

// scan follows files the globs match now and marks the ones they no
// longer match as gone.
func (t *tailer) scan(now time.Time) {
	seen := map[fileID]bool{}
	for _, path := range t.globMatches() {
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id := idOf(path, fi)
		if seen[id] {
			continue // another name of a file already seen (a symlink)
		}
		seen[id] = true
		if tf := t.files[id]; tf != nil {
			if tf.path != path || tf.gone {
				tf.path, tf.gone = path, false
				tf.setWrap(t.cfg.host)
				t.changed = true
			}
			continue
		}
		tf, err := t.open(path, id)
		if err != nil {
			t.logError(path, "opening a log file to follow failed", err)
			continue
		}
		t.resumeDormant(tf)
		t.files[id] = tf
		t.changed = true
	}
	for id, tf := range t.files {
		if !seen[id] && !tf.gone {
			tf.gone, tf.idleSince = true, now
			t.changed = true
		}
	}
}

// resume takes tf up where fc left it, if fc is still this file: it is
// at least as long and starts with the same bytes. Else tf stays at its
// start.
func (tf *tailFile) resume(fc fileCheckpoint) bool {
	want, _ := hex.DecodeString(fc.Head)
	if tf.size < fc.Offset || fc.HeadLen > int(tf.size) || !tf.headIs(fc.HeadLen, want) {
		return false
	}
	tf.offset, tf.part, tf.headLen = fc.Offset, fc.Part, fc.HeadLen
	copy(tf.headSum[:], want)
	tf.hashTail(tf.f)
	return true
}

// hashTail records the hash of the bytes of src just before tf's offset.
func (tf *tailFile) hashTail(src *os.File) {
	n := int(min(tf.offset, headBytes))
	if sum, ok := hashAt(src, tf.offset-int64(n), n); ok {
		tf.tailLen, tf.tailSum = n, sum
	}
}

// resumeDormant takes tf up where the checkpoint's dormant entry for
// its inode left it (a file moved under a glob), if its first bytes are
// still the same.
func (t *tailer) resumeDormant(tf *tailFile) {
	for i, fc := range t.dormant {
		if fc.Dev != tf.id.dev || fc.Ino != tf.id.ino {
			continue
		}
		t.dormant = append(t.dormant[:i], t.dormant[i+1:]...)
		tf.resume(fc)
		return
	}
}

// forgetFinished closes gone files read to their end and idle for
// goneGrace. An unfinished last line (no newline) is shipped then.
func (t *tailer) forgetFinished(now time.Time) {
	var done []fileID
	for id, tf := range t.files {
		if !tf.gone || now.Sub(tf.idleSince) < goneGrace {
			continue
		}
		if tf.offset < tf.size && !t.shipTail(tf) {
			continue
		}
		done = append(done, id)
	}
	// Forgotten only once their last lines are committed.
	if len(done) == 0 || !t.flush() {
		return
	}
	for _, id := range done {
		t.files[id].f.Close()
		delete(t.files, id)
	}
	t.changed = true
}

// ship reads what tf got since the last poll into the batch.
func (t *tailer) ship(tf *tailFile, now time.Time) {
	fi, err := tf.f.Stat()
	if err != nil {
		t.logError(tf.path, "reading a followed log file failed", err)
		return
	}
	size := fi.Size()
	if size != tf.size {
		tf.idleSince = now
	}
	tf.size = size
	// Truncated (copytruncate), maybe written again past where we were:
	// then its first bytes changed.
	if size < tf.offset || size > tf.offset && tf.headLen > 0 && !tf.headIs(tf.headLen, tf.headSum[:]) {
		if !t.truncated(tf) {
			return
		}
	}
	t.drain(tf, tf.f, tf.size, false)
}

// drain reads the lines of src (tf, or the copy logrotate made of it)
// from tf's offset to size into the batch, a chunk at a time; a full
// batch is committed. With final, an unfinished last line is shipped
// too; without, it waits for the rest. It reports false once a commit
// failed.
func (t *tailer) drain(tf *tailFile, src *os.File, size int64, final bool) bool {
	for tf.offset < size && !t.failed && !t.stopping() {
		n, err := src.ReadAt(t.buf[:min(int64(len(t.buf)), size-tf.offset)], tf.offset)
		if err != nil && !errors.Is(err, io.EOF) {
			t.logError(tf.path, "reading a followed log file failed", err)
			return false
		}
		last := final && tf.offset+int64(n) >= size
		consumed, part := t.records(tf, t.buf[:n], last)
		if consumed == 0 {
			return true // an unfinished line: wait for the rest
		}
		t.advance(tf, src, consumed, part)
	}
	return !t.failed
}

// truncated handles a file cut back by copytruncate. logrotate copied
// it first: if the copy is beside it (the same first bytes, and the
// same bytes before where the shipper was), what the shipper had not
// read yet is read from the copy, so only lines written between the
// copy and the truncation are lost (as they are for every reader).
// Then the file is read from its start. It reports false if the batch
// could not be committed (the next poll tries again).
func (t *tailer) truncated(tf *tailFile) bool {
	if tf.headLen > 0 {
		if cp, size := t.findCopy(tf); cp != nil {
			logger().Info("log file truncated (copytruncate); finishing what was not read from its copy",
				zap.String("file", tf.path), zap.String("copy", cp.Name()), zap.Int64("from", tf.offset), zap.Int64("to", size))
			ok := t.drain(tf, cp, size, true)
			cp.Close()
			if !ok {
				return false
			}
		}
	}
	t.restart(tf, "log file truncated (copytruncate?); reading it from the start")
	return true
}

// findCopy looks beside tf for the copy copytruncate made: another
// regular file that starts with tf's first bytes and has the bytes tf
// had just before where it was read to; the newest, if several do.
func (t *tailer) findCopy(tf *tailFile) (*os.File, int64) {
	dir := filepath.Dir(tf.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0
	}
	var best *os.File
	var bestSize int64
	var bestTime time.Time
	for _, e := range entries {
		if !e.Type().IsRegular() || compressedName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil || idOf(path, fi) == tf.id || fi.Size() < tf.offset || best != nil && !fi.ModTime().After(bestTime) {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		head, ok := hashAt(f, 0, tf.headLen)
		tail, ok2 := hashAt(f, tf.offset-int64(tf.tailLen), tf.tailLen)
		if ok && ok2 && head == tf.headSum && tail == tf.tailSum {
			if best != nil {
				best.Close()
			}
			best, bestSize, bestTime = f, fi.Size(), fi.ModTime()
			continue
		}
		f.Close()
	}
	return best, bestSize
}

// hashAt hashes n bytes of f at off.
func hashAt(f *os.File, off int64, n int) ([sha256.Size]byte, bool) {
	var b [headBytes]byte
	if n < 0 || n > headBytes || off < 0 {
		return [sha256.Size]byte{}, false
	}
	if _, err := f.ReadAt(b[:n], off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(b[:n]), true
}

// restart reads tf from its start again.
func (t *tailer) restart(tf *tailFile, msg string) {
	logger().Info(msg, zap.String("file", tf.path), zap.Int64("was_at", tf.offset), zap.Int64("size", tf.size))
	t.metrics.truncations.Inc()
	t.touch(tf)
	tf.offset, tf.part, tf.headLen, tf.tailLen = 0, 0, 0, 0
	t.changed = true
}

// shipTail ships the unfinished last line of a gone file.
func (t *tailer) shipTail(tf *tailFile) bool {
	return t.drain(tf, tf.f, tf.size, true) && tf.offset >= tf.size
}

// tailState is what a batch changes of a file: kept to undo it if the
// batch cannot be committed.
type tailState struct {
	offset           int64
	part             int
	headLen, tailLen int
	headSum, tailSum [sha256.Size]byte
}

func (tf *tailFile) state() tailState {
	return tailState{tf.offset, tf.part, tf.headLen, tf.tailLen, tf.headSum, tf.tailSum}
}

func (tf *tailFile) setState(s tailState) {
	tf.offset, tf.part, tf.headLen, tf.tailLen, tf.headSum, tf.tailSum = s.offset, s.part, s.headLen, s.tailLen, s.headSum, s.tailSum
}

// touch records tf as it was before the batch changes it.
func (t *tailer) touch(tf *tailFile) {
	if _, ok := t.undo[tf]; !ok {
		t.undo[tf] = tf.state()
	}
}

// advance moves tf past consumed bytes of src whose records are in the
// batch, and commits the batch once it is full. The hashes of the
// file's first bytes and of the bytes before the new offset follow.
func (t *tailer) advance(tf *tailFile, src *os.File, consumed, part int) {
	t.touch(tf)
	tf.offset += int64(consumed)
	tf.part = part
	if tf.headLen < headBytes {
		n := int(min(tf.offset, headBytes))
		if sum, ok := hashAt(src, 0, n); ok {
			tf.headLen, tf.headSum = n, sum
		}
	}
	tf.hashTail(src)
	t.batchBytes += int64(consumed)
	if len(t.out) >= readChunk {
		t.flush() // a batch per chunk: the checkpoint keeps up with the reads
	}
}

// flush commits the batch: its records and the checkpoint of every
// file as the batch left it, in one appendCommitted. If that fails the
// files are set back to where the last checkpoint has them, and
// nothing more is read until the next poll.
func (t *tailer) flush() bool {
	if len(t.out) == 0 && !t.changed && len(t.undo) == 0 {
		return true
	}
	lines := bytes.Count(t.out, []byte{'\n'})
	err := t.commit(t.out)
	t.out = t.out[:0]
	if err != nil {
		for tf, st := range t.undo {
			tf.setState(st)
		}
		clear(t.undo)
		t.batchBytes, t.failed = 0, true
		t.logError("spool", "writing the log spool failed; the lines stay in their files and are read again", err)
		return false
	}
	t.metrics.lines.Add(float64(lines))
	t.metrics.readBytes.Add(float64(t.batchBytes))
	clear(t.undo)
	t.batchBytes, t.changed = 0, false
	return true
}

// commit appends p to the spool and saves the checkpoint with it.
func (t *tailer) commit(p []byte) error {
	return t.sp.appendCommitted(p, func(mark spoolMark) error {
		cp := checkpoint{Spool: mark, Files: make([]fileCheckpoint, 0, len(t.files)+len(t.dormant))}
		cp.Files = append(cp.Files, t.dormant...)
		for _, tf := range t.files {
			cp.Files = append(cp.Files, fileCheckpoint{
				Path: tf.path, Dev: tf.id.dev, Ino: tf.id.ino, Offset: tf.offset,
				Head: hex.EncodeToString(tf.headSum[:]), HeadLen: tf.headLen, Part: tf.part, Gone: tf.gone,
			})
		}
		sort.Slice(cp.Files, func(i, j int) bool { return cp.Files[i].Path < cp.Files[j].Path })
		data, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		if err := writeCheckpoint(t.cfg.dir, data); err != nil {
			return err
		}
		t.metrics.checkpoints.Inc()
		return nil
	})
}

// records appends to t.out the records of the whole lines at the start
// of data, and pieces of a line longer than max_line; with final, the
// unfinished last line too. It returns the bytes consumed and the piece
// number the file is at after them.
func (t *tailer) records(tf *tailFile, data []byte, final bool) (consumed, part int) {
	part = tf.part
	ts := appendTS(nil, time.Now())
	// The records of one chunk are bounded too: short lines of a long
	// path grow many times over once wrapped.
	for len(data) > 0 && len(t.out) < batchLimit {
		i := bytes.IndexByte(data, '\n')
		// An unfinished line waits, also one of max_line bytes whose
		// CR has come and LF not yet.
		if i < 0 && !final && len(bytes.TrimSuffix(data, []byte{'\r'})) <= t.cfg.maxLine {
			break
		}
		line, n := data, len(data)
		switch {
		case i >= 0:
			line, n = bytes.TrimSuffix(data[:i], []byte{'\r'}), i+1
		case final:
			line = bytes.TrimSuffix(line, []byte{'\r'}) // a last line without LF
		}
		if len(line) > t.cfg.maxLine {
			cut := pieceEnd(line, t.cfg.maxLine)
			part++
			t.metrics.splitPieces.Inc()
			t.out = t.wrapped(t.out, ts, tf, line[:cut], part, true)
			data, consumed = data[cut:], consumed+cut
			continue
		}
		switch {
		case part > 0:
			part++
			t.out = t.wrapped(t.out, ts, tf, line, part, false)
			part = 0
		case len(line) == 0:
		case isJSONObject(line):
			t.out = append(t.out, escapeLineSeparators(bytes.Trim(line, " \t"))...)
			t.out = append(t.out, '\n')
		default:
			t.out = t.wrapped(t.out, ts, tf, line, 0, false)
		}
		data, consumed = data[n:], consumed+n
	}
	return consumed, part
}

// pieceEnd is where to cut a line longer than limit: at limit, moved
// back to the start of a UTF-8 sequence so that no character is split.
func pieceEnd(line []byte, limit int) int {
	for cut := limit; cut > limit-utf8.UTFMax && cut > 0; cut-- {
		if utf8.RuneStart(line[cut]) {
			return cut
		}
	}
	return limit
}

// isJSONObject reports whether line is one JSON object: it is shipped
// as it is.
func isJSONObject(line []byte) bool {
	l := bytes.Trim(line, " \t") // JSON's own spaces only: what is shipped is l

	return len(l) >= 2 && l[0] == '{' && l[len(l)-1] == '}' && json.Valid(l)
}

// wrapped appends the record of a plain-text line:
// {"ts":<unix seconds>,"host":…,"file":…,"line":…}, with "part" (from
// 1) and "more" (another piece follows) for the pieces of a long line.
func (t *tailer) wrapped(dst, ts []byte, tf *tailFile, line []byte, part int, more bool) []byte {
	dst = append(dst, `{"ts":`...)
	dst = append(dst, ts...)
	dst = append(dst, tf.wrap...)
	dst = appendJSONString(dst, line)
	if part > 0 {
		dst = append(dst, `,"part":`...)
		dst = strconv.AppendInt(dst, int64(part), 10)
		if more {
			dst = append(dst, `,"more":true`...)
		}
	}
	return append(dst, "}\n"...)
}

// appendTS appends now as Unix seconds with microseconds, as Caddy's
// own JSON logs write "ts".
func appendTS(dst []byte, now time.Time) []byte {
	us := now.UnixMicro()
	dst = strconv.AppendInt(dst, us/1e6, 10)
	frac := strconv.AppendInt(nil, 1e6+us%1e6, 10)
	return append(append(dst, '.'), frac[1:]...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; U+0085, U+2028 and U+2029 are escaped, as in the spool.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', hex[r>>12], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// logError logs a problem with what (a file, the spool) at most every
// tailErrorEvery.
func (t *tailer) logError(what, msg string, err error) {
	now := time.Now()
	if now.Sub(t.errLog[what]) < tailErrorEvery {
		return
	}
	t.errLog[what] = now
	logger().Error(msg, zap.String("source", t.cfg.source), zap.String("file", what), zap.Error(err))
}

// The followers of this process, by spool directory. A reload starts
// the new config's follower only after the old one stopped, so that two
// never read the same files into one spool.
var tailers = struct {
	mu    sync.Mutex
	byDir map[string]*tailer
}{byDir: make(map[string]*tailer)}

// startTailer starts following cfg's files into sp, taking over from a
// follower of an earlier config on the same spool: it stops first, and
// the new one reads on from the checkpoint it left.
func startTailer(cfg tailConfig, sp *spool) *tailer {
	tailers.mu.Lock()
	defer tailers.mu.Unlock()
	t := newTailer(cfg, sp)
	if old := tailers.byDir[cfg.dir]; old != nil {
		old.close()
		old.prev = nil // only one step back is ever needed
		t.prev = old
	}
	tailers.byDir[cfg.dir] = t
	go t.run()
	return t
}

// stopTailer stops t as its config stops. A follower a newer config's
// took over from is stopped already. If t took over from a follower
// whose config still runs, t's config is one that failed to start (a
// reload that Caddy undid): the files go back to the old follower,
// which reads on from the checkpoint.
func stopTailer(t *tailer) {
	tailers.mu.Lock()
	defer tailers.mu.Unlock()
	t.released = true
	if tailers.byDir[t.cfg.dir] != t {
		return
	}
	t.close()
	delete(tailers.byDir, t.cfg.dir)
	if p := t.prev; p != nil && !p.released {
		t.prev = nil
		p.reset()
		tailers.byDir[p.cfg.dir] = p
		go p.run()
	}
}
