package assetcdn

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"go.uber.org/zap"
)

// How asset_serve answers from the store in proxy mode, and what each
// answer costs the store:
//
//   - GET: one GET, with the exact range when the client sent one Range;
//     the GET's answer carries the metadata a HEAD would.
//   - HEAD, and a GET with validators (If-None-Match, If-Modified-Since,
//     If-Match, If-Unmodified-Since, If-Range): one HEAD, which answers a
//     revalidation (304) or a failed precondition (412) without reading
//     the object; then, only if bytes are sent, one GET.
//   - several ranges: one HEAD (their positions need the size), then one
//     ranged GET per group of ranges less than rangeReadGap apart, so at
//     most max_ranges GETs. Ranges that overlap or touch are merged, and
//     more than max_ranges make the header ignored (RFC 9110 section 14.2
//     allows it): the whole object is sent, as to a plain GET. With a
//     store that honours Range (S3, MinIO, R2, versitygw but for empty
//     objects), no answer reads more of the store than the object, or the
//     ranges sent and the gaps (under rangeReadGap) between close ones.

// defaultMaxRanges is how many ranges one request may ask for before its
// Range header is ignored.
const defaultMaxRanges = 16

// rangeReadGap is how far apart two requested ranges may be and still be
// read from the store in one ranged GET (the bytes between are read and
// dropped): fewer, larger reads beat many small ones up to about this.
const rangeReadGap = 64 << 10

// partOverhead is about what one more part of a multipart/byteranges
// answer costs; ranges closer than this are sent as one part.
const partOverhead = 80

// rangeKind is what a Range header asks.
type rangeKind int

const (
	rangeNone    rangeKind = iota // no Range, or one to ignore (not bytes, too many ranges)
	rangeSome                     // byte ranges
	rangeInvalid                  // a bytes range that does not parse: 416
)

// parseRange reads a Range header (RFC 9110 section 14.1.2) into at most
// maxRanges byte ranges; a header with more is ignored, as is one of
// another unit.
func parseRange(header string, maxRanges int) ([]objectstore.ByteRange, rangeKind) {
	if header == "" {
		return nil, rangeNone
	}
	unit, set, ok := strings.Cut(header, "=")
	if !ok {
		return nil, rangeInvalid
	}
	if !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, rangeNone
	}
	var ranges []objectstore.ByteRange
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue // empty list elements are allowed (RFC 9110 section 5.6.1)
		}
		if len(ranges) == maxRanges {
			return nil, rangeNone
		}
		r, ok := parseRangeSpec(spec)
		if !ok {
			return nil, rangeInvalid
		}
		ranges = append(ranges, r)
	}
	if len(ranges) == 0 {
		return nil, rangeInvalid
	}
	return ranges, rangeSome
}

// parseRangeSpec reads "first-last", "first-" or "-suffix".
func parseRangeSpec(spec string) (objectstore.ByteRange, bool) {
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return objectstore.ByteRange{}, false
	}
	if a == "" {
		n, ok := parseDigits(b)
		return objectstore.ByteRange{First: -1, Last: n}, ok
	}
	first, ok := parseDigits(a)
	if !ok {
		return objectstore.ByteRange{}, false
	}
	if b == "" {
		return objectstore.ByteRange{First: first, Last: -1}, true
	}
	last, ok := parseDigits(b)
	if !ok || last < first {
		return objectstore.ByteRange{}, false
	}
	return objectstore.ByteRange{First: first, Last: last}, true
}

// parseDigits reads a non-negative decimal (no sign, no spaces). One
// past an int64 saturates at the largest: "bytes=0-99999999999999999999"
// is valid and means to the end.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// span is a resolved range: offset and length within the object.
type span struct{ off, n int64 }

func (s span) end() int64 { return s.off + s.n } // exclusive

// resolveRanges turns ranges into spans within size bytes, drops the
// unsatisfiable ones, and merges those that overlap or are less than a
// part's overhead apart, in ascending order. None left means 416.
func resolveRanges(ranges []objectstore.ByteRange, size int64) []span {
	spans := make([]span, 0, len(ranges))
	for i := range ranges {
		if off, n, ok := ranges[i].Resolve(size); ok {
			spans = append(spans, span{off, n})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return int(min(max(a.off-b.off, -1), 1)) })
	merged := spans[:0]
	for _, s := range spans {
		if k := len(merged) - 1; k >= 0 && s.off <= merged[k].end()+partOverhead {
			merged[k].n = max(merged[k].end(), s.end()) - merged[k].off
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// readGroups splits sorted spans into groups that one ranged GET reads.
func readGroups(spans []span) [][]span {
	var groups [][]span
	for i, s := range spans {
		if i > 0 && s.off-spans[i-1].end() <= rangeReadGap {
			groups[len(groups)-1] = append(groups[len(groups)-1], s)
			continue
		}
		groups = append(groups, []span{s})
	}
	return groups
}

// precondition evaluates the conditional headers against info in the
// order of RFC 9110 section 13.2.2: 412, 304, or 0 to go on.
func precondition(r *http.Request, info objectstore.ObjectInfo) int {
	h := r.Header
	if im := h.Get("If-Match"); im != "" {
		if !etagListMatches(im, info.ETag, true) {
			return http.StatusPreconditionFailed
		}
	} else if ius, err := http.ParseTime(h.Get("If-Unmodified-Since")); err == nil && !info.LastModified.IsZero() {
		if info.LastModified.Truncate(time.Second).After(ius) {
			return http.StatusPreconditionFailed
		}
	}
	if inm := h.Get("If-None-Match"); inm != "" {
		if etagListMatches(inm, info.ETag, false) {
			return http.StatusNotModified
		}
	} else if ims, err := http.ParseTime(h.Get("If-Modified-Since")); err == nil && !info.LastModified.IsZero() {
		if !info.LastModified.Truncate(time.Second).After(ims) {
			return http.StatusNotModified
		}
	}
	return 0
}

// hasValidators reports whether the request has a conditional header
// that needs the object's metadata before anything is read. (If-Range
// could be checked on a ranged GET's answer, but when it fails that
// costs a second GET of the whole object and the first one's bytes.)
func hasValidators(h http.Header) bool {
	for _, name := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if h.Get(name) != "" {
			return true
		}
	}
	return false
}

// ifRangeHolds reports whether If-Range lets the Range apply (RFC 9110
// section 13.1.5): absent, a strong ETag equal to the object's, or the
// object's exact Last-Modified date.
func ifRangeHolds(h http.Header, info objectstore.ObjectInfo) bool {
	ir := strings.TrimSpace(h.Get("If-Range"))
	switch {
	case ir == "":
		return true
	case strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/"):
		return !strings.HasPrefix(ir, "W/") && !strings.HasPrefix(info.ETag, "W/") && ir == info.ETag
	}
	t, err := http.ParseTime(ir)
	return err == nil && !info.LastModified.IsZero() && info.LastModified.Truncate(time.Second).Equal(t)
}

// etagListMatches compares a comma-separated If-Match/If-None-Match list
// with etag: "*" matches any; strong comparison refuses weak tags (RFC
// 9110 section 8.8.3.2).
func etagListMatches(list, etag string, strong bool) bool {
	if etag == "" {
		return false
	}
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for tag := range strings.SplitSeq(list, ",") {
		tag = strings.TrimSpace(tag)
		if strong {
			if !strings.HasPrefix(tag, "W/") && !strings.HasPrefix(etag, "W/") && tag == etag {
				return true
			}
			continue
		}
		if strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// writeNotModified answers 304 with the validators and caching headers a
// 200 would carry, and none of the body's (RFC 9110 section 15.4.5).
func writeNotModified(w http.ResponseWriter) {
	h := w.Header()
	for _, name := range [...]string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Disposition", "Content-Security-Policy", "Accept-Ranges"} {
		delete(h, name)
	}
	if h.Get("Etag") != "" {
		delete(h, "Last-Modified")
	}
	w.WriteHeader(http.StatusNotModified)
}

// writeUnsatisfiable answers 416 with the object's size (and none of
// the object's headers: see proxyAfterStat).
func writeUnsatisfiable(w http.ResponseWriter, size int64) error {
	h := w.Header()
	h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	_, err := io.WriteString(w, "none of the requested ranges is within the file\n")
	return err
}

// writePart sends one GET's bytes as the whole answer: 200 for the whole
// object, 206 with Content-Range for a part.
func writePart(w http.ResponseWriter, r *http.Request, part *objectstore.Part, partial bool) error {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	if part.Length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(part.Length, 10))
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", part.Offset, part.Offset+part.Length-1, part.Info.Size))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := io.Copy(w, part)
	return err
}

// byteRangesWriter writes a multipart/byteranges answer (RFC 9110
// section 14.6), its length known before the first byte.
type byteRangesWriter struct {
	boundary, ctype string
	size            int64
}

func newByteRangesWriter(ctype string, size int64) byteRangesWriter {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return byteRangesWriter{boundary: hex.EncodeToString(b[:]), ctype: ctype, size: size}
}

func (bw byteRangesWriter) partHeader(s span, first bool) string {
	var b strings.Builder
	if !first {
		b.WriteString("\r\n")
	}
	b.WriteString("--" + bw.boundary + "\r\n")
	b.WriteString("Content-Type: " + bw.ctype + "\r\n")
	fmt.Fprintf(&b, "Content-Range: bytes %d-%d/%d\r\n\r\n", s.off, s.end()-1, bw.size)
	return b.String()
}

func (bw byteRangesWriter) closing() string { return "\r\n--" + bw.boundary + "--\r\n" }

// contentLength is the answer's length for spans.
func (bw byteRangesWriter) contentLength(spans []span) int64 {
	n := int64(len(bw.closing()))
	for i, s := range spans {
		n += int64(len(bw.partHeader(s, i == 0))) + s.n
	}
	return n
}

// serveRanges answers several spans: one ranged GET per read group,
// each conditional on the ETag of the HEAD that the headers came from.
func (s *Serve) serveRanges(w http.ResponseWriter, r *http.Request, info objectstore.ObjectInfo, spans []span) error {
	groups := readGroups(spans)
	wroteHeader, first := false, true
	var bw byteRangesWriter
	for _, g := range groups {
		rng := &objectstore.ByteRange{First: g[0].off, Last: g[len(g)-1].end() - 1}
		part, err := s.store.Get(r.Context(), info.Key, rng, info.ETag)
		if err != nil {
			if !wroteHeader {
				return s.storeError(w, info.Key, "reading ranges of", err)
			}
			s.logger.Error("asset store read failed while serving ranges", zap.String("key", info.Key), zap.Error(err))
			panic(http.ErrAbortHandler) // headers are out: end the answer rather than send a wrong one
		}
		if !wroteHeader {
			// The headers, once the store has answered.
			h := w.Header()
			setObjectHeaders(h, info, s.CacheControl)
			bw = newByteRangesWriter(h.Get("Content-Type"), info.Size)
			h.Set("Accept-Ranges", "bytes")
			h.Set("Content-Type", "multipart/byteranges; boundary="+bw.boundary)
			h.Set("Content-Length", strconv.FormatInt(bw.contentLength(spans), 10))
			w.WriteHeader(http.StatusPartialContent)
			wroteHeader = true
		}
		pos := rng.First
		for _, sp := range g {
			if _, err = io.CopyN(io.Discard, part, sp.off-pos); err == nil {
				if _, err = io.WriteString(w, bw.partHeader(sp, first)); err == nil {
					_, err = io.CopyN(w, part, sp.n)
				}
			}
			first, pos = false, sp.end()
			if err != nil {
				part.Close()
				return s.copyError(info.Key, err)
			}
		}
		part.Close()
	}
	_, err := io.WriteString(w, bw.closing())
	return err
}
