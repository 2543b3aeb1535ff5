package assetcdn

import (
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   []objectstore.ByteRange
		kind   rangeKind
	}{
		{"", nil, rangeNone},
		{"bytes=0-9", []objectstore.ByteRange{br(0, 9)}, rangeSome},
		{"bytes=5-", []objectstore.ByteRange{br(5, -1)}, rangeSome},
		{"bytes=-5", []objectstore.ByteRange{br(-1, 5)}, rangeSome},
		{"BYTES = 0-1 , 4-5", []objectstore.ByteRange{br(0, 1), br(4, 5)}, rangeSome},
		{"bytes=0-1,,4-5,", []objectstore.ByteRange{br(0, 1), br(4, 5)}, rangeSome},
		{"items=0-9", nil, rangeNone},
		{"bytes=" + strings.Repeat("0-0,", 17), nil, rangeNone}, // past max_ranges: ignored
		{"bytes=" + strings.Repeat("0-0,", 16), []objectstore.ByteRange{br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0), br(0, 0)}, rangeSome},
		{"bytes=9-0", nil, rangeInvalid},
		{"bytes=-", nil, rangeInvalid},
		{"bytes=", nil, rangeInvalid},
		{"bytes=a-b", nil, rangeInvalid},
		{"bytes=+1-2", nil, rangeInvalid},
		{"bytes=1 -2", nil, rangeInvalid},
		{"bytes=0x1-2", nil, rangeInvalid},
		{"bytes=99999999999999999999-", []objectstore.ByteRange{{First: math.MaxInt64, Last: -1}}, rangeSome}, // past any object: 416 once resolved
		{"bytes=0-99999999999999999999", []objectstore.ByteRange{{First: 0, Last: math.MaxInt64}}, rangeSome}, // to the end
		{"bytes=-99999999999999999999", []objectstore.ByteRange{{First: -1, Last: math.MaxInt64}}, rangeSome}, // the whole object
		{"bytes=1-2-3", nil, rangeInvalid},
		{"bytes 0-9", nil, rangeInvalid},
	} {
		got, kind := parseRange(tc.header, defaultMaxRanges)
		if kind != tc.kind || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRange(%q) = %v %v, want %v %v", tc.header, got, kind, tc.want, tc.kind)
		}
	}
}

func TestResolveRanges(t *testing.T) {
	for _, tc := range []struct {
		ranges []objectstore.ByteRange
		size   int64
		want   []span
	}{
		{[]objectstore.ByteRange{br(0, 9)}, 100, []span{{0, 10}}},
		{[]objectstore.ByteRange{br(90, 200)}, 100, []span{{90, 10}}},
		{[]objectstore.ByteRange{br(-1, 10)}, 100, []span{{90, 10}}},
		{[]objectstore.ByteRange{br(-1, 1000)}, 100, []span{{0, 100}}},
		{[]objectstore.ByteRange{br(100, -1)}, 100, nil},                                                // past the end
		{[]objectstore.ByteRange{br(-1, 0)}, 100, nil},                                                  // the last 0 bytes
		{[]objectstore.ByteRange{br(0, 0)}, 0, nil},                                                     // an empty file has no byte 0
		{[]objectstore.ByteRange{br(500, 600), br(0, 1)}, 1000, []span{{0, 2}, {500, 101}}},             // sorted
		{[]objectstore.ByteRange{br(0, 9), br(5, 19), br(20, 29)}, 1000, []span{{0, 30}}},               // overlapping and adjacent merged
		{[]objectstore.ByteRange{br(0, 0), br(50, 50)}, 1000, []span{{0, 51}}},                          // closer than a part's overhead
		{[]objectstore.ByteRange{br(0, 0), br(0, 0), br(0, 0)}, 1000, []span{{0, 1}}},                   // repeated
		{[]objectstore.ByteRange{br(0, 0), br(200, 200), br(5000, -1)}, 1000, []span{{0, 1}, {200, 1}}}, // the unsatisfiable dropped
		{[]objectstore.ByteRange{br(-1, 600), br(0, 600)}, 1000, []span{{0, 1000}}},
		{[]objectstore.ByteRange{{First: 0, Last: math.MaxInt64}}, 1000, []span{{0, 1000}}},
		{[]objectstore.ByteRange{{First: math.MaxInt64, Last: -1}}, 1000, nil},
		{[]objectstore.ByteRange{{First: -1, Last: math.MaxInt64}}, 1000, []span{{0, 1000}}},
	} {
		if got := resolveRanges(tc.ranges, tc.size); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("resolveRanges(%v, %d) = %v, want %v", tc.ranges, tc.size, got, tc.want)
		}
	}
}

func TestReadGroups(t *testing.T) {
	spans := []span{{0, 1}, {100, 1}, {200_000, 10}, {200_100, 5}, {900_000, 1}}
	got := readGroups(spans)
	want := [][]span{{{0, 1}, {100, 1}}, {{200_000, 10}, {200_100, 5}}, {{900_000, 1}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readGroups = %v, want %v", got, want)
	}
}

func TestPreconditionsInRFCOrder(t *testing.T) {
	mod := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	info := objectstore.ObjectInfo{ETag: `"abc"`, LastModified: mod.Add(300 * time.Millisecond)}
	before, after := mod.Add(-time.Hour).Format(http.TimeFormat), mod.Add(time.Hour).Format(http.TimeFormat)
	exact := mod.Format(http.TimeFormat)
	for _, tc := range []struct {
		headers []string
		want    int
	}{
		{nil, 0},
		{[]string{"If-Match", `"abc"`}, 0},
		{[]string{"If-Match", `"x", "abc"`}, 0},
		{[]string{"If-Match", `W/"abc"`}, 412}, // strong comparison
		{[]string{"If-Match", `"x"`}, 412},
		{[]string{"If-Match", "*"}, 0},
		{[]string{"If-Unmodified-Since", before}, 412},
		{[]string{"If-Unmodified-Since", exact}, 0},                       // second precision
		{[]string{"If-Match", `"abc"`, "If-Unmodified-Since", before}, 0}, // If-Match wins
		{[]string{"If-None-Match", `"abc"`}, 304},
		{[]string{"If-None-Match", `W/"abc"`}, 304}, // weak comparison
		{[]string{"If-None-Match", "*"}, 304},
		{[]string{"If-None-Match", `"x"`}, 0},
		{[]string{"If-Modified-Since", exact}, 304},
		{[]string{"If-Modified-Since", after}, 304},
		{[]string{"If-Modified-Since", before}, 0},
		{[]string{"If-None-Match", `"x"`, "If-Modified-Since", after}, 0}, // If-None-Match wins
		{[]string{"If-Match", `"x"`, "If-None-Match", `"abc"`}, 412},
		{[]string{"If-Modified-Since", "not a date"}, 0},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for i := 0; i+1 < len(tc.headers); i += 2 {
			r.Header.Set(tc.headers[i], tc.headers[i+1])
		}
		if got := precondition(r, info); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.headers, got, tc.want)
		}
	}
}

func TestServeIfRange(t *testing.T) {
	store := newTestStore(t)
	info := putTestObject(t, store, "f.txt", []byte("0123456789"), objectstore.PutOptions{ContentType: "text/plain"})
	s := newTestServe(t, store, nil)
	for _, tc := range []struct {
		ifRange, body string
		status        int
	}{
		{info.ETag, "23", 206},
		{`"stale"`, "0123456789", 200},
		{"W/" + info.ETag, "0123456789", 200}, // weak tags never match If-Range
		{info.LastModified.UTC().Format(http.TimeFormat), "23", 206},
		{info.LastModified.Add(-time.Hour).UTC().Format(http.TimeFormat), "0123456789", 200},
	} {
		req := httptest.NewRequest(http.MethodGet, "/f.txt", nil)
		req.Header.Set("Range", "bytes=2-3")
		req.Header.Set("If-Range", tc.ifRange)
		if rec := serveAsset(t, s, req); rec.Code != tc.status || rec.Body.String() != tc.body {
			t.Errorf("If-Range %s: %d %q, want %d %q", tc.ifRange, rec.Code, rec.Body, tc.status, tc.body)
		}
	}
}

// FuzzParseRange: whatever the header, parsing and resolving never panic,
// spans lie within the object, are sorted and apart, and never add up to
// more than it.
func FuzzParseRange(f *testing.F) {
	for _, seed := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-0,100-100,-1", "bytes=9-0", "bytes=" + strings.Repeat("1-2,", 20), "items=1-2", "bytes=99999999999999999-"} {
		f.Add(seed, int64(1000))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -size
		}
		ranges, kind := parseRange(header, defaultMaxRanges)
		if kind != rangeSome {
			if len(ranges) != 0 {
				t.Fatalf("kind %v with ranges %v", kind, ranges)
			}
			return
		}
		if len(ranges) > defaultMaxRanges {
			t.Fatalf("%d ranges past the cap", len(ranges))
		}
		spans := resolveRanges(ranges, size)
		var total int64
		for i, s := range spans {
			if s.off < 0 || s.n <= 0 || s.end() > size {
				t.Fatalf("span %v outside an object of %d bytes", s, size)
			}
			if i > 0 && s.off <= spans[i-1].end() {
				t.Fatalf("spans %v not sorted and apart", spans)
			}
			total += s.n
		}
		if total > size {
			t.Fatalf("spans %v add up to %d of %d bytes", spans, total, size)
		}
	})
}

// br is a byte range First-Last.
func br(first, last int64) objectstore.ByteRange {
	return objectstore.ByteRange{First: first, Last: last}
}
