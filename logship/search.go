package logship

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
	"github.com/caddylb/caddylb/logship/logquery"
)

// SearchOptions say which shipped lines `caddy lb-logs search` prints.
type SearchOptions struct {
	Prefix string // the prefix the writers ship under
	Key    string // their key template; default DefaultKey
	Hosts  []string
	Name   string // only this log name; "" for all
	Since  time.Time
	Until  time.Time // zero: no end
	Where  logquery.Conds
	Format string // "json" (default) or "text"
	// Follow: after the window, keep printing what is shipped next,
	// looking every FollowEvery (default 2s), until ctx ends.
	Follow      bool
	FollowEvery time.Duration
	// Lookback is how long before Since a file may have started and
	// still hold lines of the window: the longest roll_interval of the
	// writers. Default: 1h.
	Lookback time.Duration
}

// SearchStats is what a search read.
type SearchStats struct {
	Objects, Skipped int
	Lines, Printed   int64
	Bytes            int64 // gzipped bytes read
}

// Search prints to out, in timestamp order, the lines of the objects
// that writers shipped under opts.Prefix that match opts. Objects that
// cannot be read (corrupt gzip, a failed GET) are reported to errOut,
// with the object's key and the problem, and skipped: their lines read
// before the problem are kept.
func Search(ctx context.Context, store objectstore.Store, opts SearchOptions, out, errOut io.Writer) (SearchStats, error) {
	s, err := newSearcher(store, opts, out, errOut)
	if err != nil {
		return SearchStats{}, err
	}
	return s.run(ctx)
}

// searcher is one search.
type searcher struct {
	store  objectstore.Store
	opts   SearchOptions
	layout *keyLayout
	hosts  map[string]bool
	w      *bufio.Writer
	errOut io.Writer
	format func(dst []byte, l *searchLine) []byte

	statsMu sync.Mutex
	stats   SearchStats
	// read: the objects already printed, by stream: their newest start
	// and keys, so that --follow prints each object once.
	read map[string]*streamSeen
	// retry: objects whose read failed (not their content), by key, with
	// the lines read before; not marked read, and read again by --follow
	// from resume[key] lines on, so that no line is printed twice. Under
	// statsMu.
	retry, resume map[string]int64
}

type streamSeen struct {
	keys map[string]time.Time // key: the object's start
}

func newSearcher(store objectstore.Store, opts SearchOptions, out, errOut io.Writer) (*searcher, error) {
	if opts.Key == "" {
		opts.Key = DefaultKey
	}
	if opts.Lookback <= 0 {
		opts.Lookback = time.Hour
	}
	if opts.FollowEvery <= 0 {
		opts.FollowEvery = 2 * time.Second
	}
	if !opts.Until.IsZero() && opts.Until.Before(opts.Since) {
		return nil, fmt.Errorf("--until %s is before --since %s", opts.Until.Format(time.RFC3339), opts.Since.Format(time.RFC3339))
	}
	if opts.Follow && !opts.Until.IsZero() {
		return nil, errors.New("--follow and --until do not go together: --follow has no end")
	}
	layout, err := newKeyLayout(opts.Key, opts.Prefix)
	if err != nil {
		return nil, err
	}
	s := &searcher{store: store, opts: opts, layout: layout, w: bufio.NewWriterSize(out, 64<<10), errOut: errOut, read: map[string]*streamSeen{}, retry: map[string]int64{}, resume: map[string]int64{}}
	switch opts.Format {
	case "", "json":
		s.format = formatJSON
	case "text":
		s.format = formatText
	default:
		return nil, fmt.Errorf("--format %q: want json or text", opts.Format)
	}
	if len(opts.Hosts) > 0 {
		s.hosts = map[string]bool{}
		for _, h := range opts.Hosts {
			s.hosts[segmentSafe(h)] = true
		}
	}
	return s, nil
}

func (s *searcher) run(ctx context.Context) (SearchStats, error) {
	to := s.opts.Until
	if to.IsZero() {
		to = time.Now()
	}
	err := s.window(ctx, s.opts.Since.Add(-s.opts.Lookback), to, s.opts.Until)
	for err == nil && s.opts.Follow {
		if err = s.w.Flush(); err != nil {
			break
		}
		select {
		case <-ctx.Done():
			return s.stats, nil
		case <-time.After(s.opts.FollowEvery):
		}
		// Files shipped since started at most two lookbacks ago (an
		// upload comes a roll_interval after the file's start, more while
		// the store is down); lines from before --since are still left
		// out.
		now := time.Now()
		err = s.window(ctx, later(s.opts.Since.Add(-s.opts.Lookback), now.Add(-2*s.opts.Lookback)), now, time.Time{})
	}
	if ferr := s.w.Flush(); err == nil {
		err = ferr
	}
	if s.opts.Follow && ctx.Err() != nil {
		err = nil // interrupted: the normal end of --follow
	}
	return s.stats, err
}

// window prints the lines of [--since, until] (a zero until: no end)
// of the objects started in [from, to] not printed yet.
func (s *searcher) window(ctx context.Context, from, to, until time.Time) error {
	streams, err := s.list(ctx, from, to)
	if err != nil {
		return err
	}
	if err := s.merge(ctx, streams, s.opts.Since, until); err != nil {
		return err
	}
	s.forgetOld(from)
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// list finds the objects started in [from, to] that may hold lines
// from --since on, by stream (host and log name), oldest first: those
// started since and, of each stream, the last one started before.
func (s *searcher) list(ctx context.Context, from, to time.Time) ([][]shippedObject, error) {
	since := s.opts.Since
	var hosts []string
	for h := range s.hosts {
		hosts = append(hosts, h)
	}
	prefixes, err := s.layout.windowPrefixes(ctx, s.store, hosts, s.opts.Name, from, to)
	if err != nil {
		return nil, fmt.Errorf("listing shipped logs: %w", err)
	}
	byStream := map[string][]shippedObject{}
	for _, p := range prefixes {
		err := s.store.List(ctx, p, func(oi objectstore.ObjectInfo) error {
			o, ok := s.layout.parse(oi.Key)
			if !ok || s.hosts != nil && !s.hosts[o.host] || s.opts.Name != "" && o.name != segmentSafe(s.opts.Name) {
				return nil
			}
			if o.start.Before(from) || o.start.After(to) {
				return nil
			}
			id := o.host + "\x00" + o.name
			byStream[id] = append(byStream[id], o)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing shipped logs under %q: %w", p, err)
		}
	}
	var streams [][]shippedObject
	ids := make([]string, 0, len(byStream))
	for id := range byStream {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		objs := byStream[id]
		sort.Slice(objs, func(i, j int) bool {
			if !objs[i].start.Equal(objs[j].start) {
				return objs[i].start.Before(objs[j].start)
			}
			return objs[i].key < objs[j].key
		})
		first := 0
		for i, o := range objs {
			if !o.start.After(since) {
				first = i // the last one started before the window
			}
		}
		seen := s.read[id]
		if seen == nil {
			seen = &streamSeen{keys: map[string]time.Time{}}
			s.read[id] = seen
		}
		var todo []shippedObject
		for i, o := range objs {
			if _, done := seen.keys[o.key]; done {
				continue
			}
			if i < first {
				seen.keys[o.key] = o.start // only lines from before the window
				continue
			}
			todo = append(todo, o)
		}
		if len(todo) > 0 {
			streams = append(streams, todo)
		}
	}
	return streams, nil
}

// searchLine is one line that matched.
type searchLine struct {
	ts   time.Time
	host string
	line []byte
}

// batch is what a stream's reader hands the merge at a time.
type batch struct {
	lines []searchLine
	buf   []byte // holds the lines' bytes
}

const batchBytes = 64 << 10

// merge reads every stream at once and prints their lines in
// timestamp order.
func (s *searcher) merge(ctx context.Context, streams [][]shippedObject, since, until time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	chans := make([]chan batch, len(streams))
	var wg sync.WaitGroup
	// Readers blocked on a full channel end once ctx does: cancel, then
	// wait (an output error returns early).
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i, objs := range streams {
		chans[i] = make(chan batch, 2)
		wg.Add(1)
		go func(objs []shippedObject, ch chan<- batch) {
			defer wg.Done()
			defer close(ch)
			s.readStream(ctx, objs, since, until, ch)
		}(objs, chans[i])
	}
	h := &lineHeap{}
	for i, ch := range chans {
		if b, ok := <-ch; ok {
			heap.Push(h, &streamHead{ch: ch, b: b, order: i})
		}
	}
	var out []byte
	for h.Len() > 0 {
		head := (*h)[0]
		l := &head.b.lines[head.i]
		out = s.format(out[:0], l)
		if _, err := s.w.Write(out); err != nil {
			return fmt.Errorf("writing the output: %w", err)
		}
		s.stats.Printed++
		head.i++
		if head.i == len(head.b.lines) {
			b, ok := <-head.ch
			if !ok {
				heap.Pop(h)
				continue
			}
			head.b, head.i = b, 0
		}
		heap.Fix(h, 0)
	}
	for _, objs := range streams {
		seen := s.read[objs[0].host+"\x00"+objs[0].name]
		for _, o := range objs {
			if n, failed := s.retry[o.key]; failed {
				delete(s.retry, o.key) // --follow reads it again, from n lines on
				s.resume[o.key] = n
				continue
			}
			delete(s.resume, o.key)
			seen.keys[o.key] = o.start
		}
	}
	return ctx.Err()
}

// forgetOld drops what --follow remembers of objects started before
// horizon, which are not listed again, so that its memory stays bounded
// however long it runs.
func (s *searcher) forgetOld(horizon time.Time) {
	for id, seen := range s.read {
		for key, start := range seen.keys {
			if start.Before(horizon) {
				delete(seen.keys, key)
			}
		}
		if len(seen.keys) == 0 {
			delete(s.read, id)
		}
	}
}

// readStream reads one stream's objects in order and sends the lines of
// [since, until] that match, in batches.
func (s *searcher) readStream(ctx context.Context, objs []shippedObject, since, until time.Time, ch chan<- batch) {
	b := batch{}
	send := func() bool {
		if len(b.lines) == 0 {
			return true
		}
		select {
		case ch <- b:
			b = batch{}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, o := range objs {
		s.statsMu.Lock()
		skip := s.resume[o.key] // lines printed before a failed read
		s.statsMu.Unlock()
		var read int64
		last, known := o.start, false
		err := s.readObject(ctx, o, func(line []byte) bool {
			read++
			if read <= skip {
				return true
			}
			ts, ok := logquery.Timestamp(line)
			if ok {
				last, known = ts, true
			} else {
				ts = last // a line without a time keeps its place
			}
			// A line without a time, and none before it in its file, is
			// taken to be in the window its file was listed for.
			if known && (ts.Before(since) || !until.IsZero() && ts.After(until)) || !s.opts.Where.Match(line) {
				return true
			}
			if len(b.buf)+len(line) > cap(b.buf) && len(b.lines) > 0 {
				if !send() {
					return false
				}
			}
			if b.buf == nil {
				b.buf = make([]byte, 0, max(batchBytes, len(line)))
			}
			start := len(b.buf)
			b.buf = append(b.buf, line...)
			b.lines = append(b.lines, searchLine{ts: ts, host: o.host, line: b.buf[start:len(b.buf):len(b.buf)]})
			return true
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.statsMu.Lock()
			s.stats.Skipped++
			if errors.Is(err, errTransient) {
				s.retry[o.key] = max(read, skip)
			}
			s.statsMu.Unlock()
			fmt.Fprintf(s.errOut, "lb-logs: skipping %s: %v\n", o.key, err)
		}
	}
	send()
}

// maxSearchLine bounds a line read from an object: the longest record a
// file shipper writes (a max_line piece of control characters, each
// escaped in six bytes, with its wrapping). A longer line is reported
// and skipped, and the object read on.
const maxSearchLine = 6*MaxMaxLine + 64<<10

// errTransient marks a read that failed for a reason other than the
// object (a GET or a read of its body): --follow tries it again.
var errTransient = errors.New("reading the object failed")

// readObject calls fn for each line of o, until fn returns false.
func (s *searcher) readObject(ctx context.Context, o shippedObject, fn func([]byte) bool) error {
	s.statsMu.Lock()
	s.stats.Objects++
	s.statsMu.Unlock()
	part, err := s.store.Get(ctx, o.key, nil, "")
	if errors.Is(err, objectstore.ErrUnavailable) {
		return fmt.Errorf("%w: %v", errTransient, err)
	}
	if err != nil {
		return err // gone, access denied: trying again does not help
	}
	defer part.Close()
	counted := &countingReader{r: part}
	defer func() {
		s.statsMu.Lock()
		s.stats.Bytes += counted.n
		s.statsMu.Unlock()
	}()
	zr, err := gzip.NewReader(bufio.NewReaderSize(counted, 64<<10))
	if err != nil {
		return counted.failure("not gzip", err)
	}
	br := bufio.NewReaderSize(zr, 64<<10)
	var long []byte
	var lines int64
	var tooLong error // the first line skipped for its length
	defer func() {
		s.statsMu.Lock()
		s.stats.Lines += lines
		s.statsMu.Unlock()
	}()
	skipping := false // inside a line longer than maxSearchLine
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping && len(long)+len(chunk) > maxSearchLine {
				skipping, long = true, nil
				if tooLong == nil {
					tooLong = fmt.Errorf("line %d is longer than %d bytes; skipped", lines+1, maxSearchLine)
				}
			}
			if !skipping {
				long = append(long, chunk...)
			}
			continue
		}
		if err != nil && err != io.EOF {
			// The read failed inside a line: what came of it is not a line.
			return counted.failure(fmt.Sprintf("after %d lines", lines), err)
		}
		line := chunk
		if long != nil {
			long = append(long, chunk...)
			line = long
		}
		if skipping {
			skipping, line = false, nil
			lines++
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(line) > 0 {
			lines++
			if !fn(line) {
				return ctx.Err()
			}
		}
		long = long[:0]
		if cap(long) > 1<<20 {
			long = nil
		}
		if err == io.EOF {
			return tooLong
		}
	}
}

// countingReader counts what was read of an object and keeps the
// error of the read itself, to tell a failed transfer from a corrupt
// object.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

// failure describes err, met while reading the object at where: a
// transfer that failed (errTransient, which --follow retries), or what
// the object holds.
func (c *countingReader) failure(where string, err error) error {
	if c.err != nil && !errors.Is(c.err, io.EOF) {
		return fmt.Errorf("%w (%s): %v", errTransient, where, c.err)
	}
	return fmt.Errorf("%s: %v", where, err)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// streamHead is a stream's next line in the merge.
type streamHead struct {
	ch    <-chan batch
	b     batch
	i     int
	order int // ties keep the streams' order
}

type lineHeap []*streamHead

func (h lineHeap) Len() int { return len(h) }
func (h lineHeap) Less(i, j int) bool {
	a, b := h[i].b.lines[h[i].i].ts, h[j].b.lines[h[j].i].ts
	if !a.Equal(b) {
		return a.Before(b)
	}
	return h[i].order < h[j].order
}
func (h lineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lineHeap) Push(x any)   { *h = append(*h, x.(*streamHead)) }
func (h *lineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
