package affinity

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzMarkPrivate feeds arbitrary Cache-Control values (from the upstream
// or earlier handlers): the result must always forbid shared caching.
func FuzzMarkPrivate(f *testing.F) {
	for _, seed := range []string{"", "public", "public, max-age=60, s-maxage=600", "no-store", "PRIVATE", ",,,", "max-age=\"1,2\"", "\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		h := http.Header{}
		if value != "" {
			h.Set("Cache-Control", value)
		}
		markPrivate(h)
		out := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
		if !strings.Contains(out, "private") && !strings.Contains(out, "no-store") {
			t.Fatalf("Cache-Control %q became %q: shared caches may store it", value, out)
		}
		for _, d := range strings.Split(out, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(d), "="); name == "public" || name == "s-maxage" {
				if !strings.Contains(strings.ToLower(value), "no-store") && !strings.Contains(strings.ToLower(value), "private") {
					t.Fatalf("Cache-Control %q kept %q", value, name)
				}
			}
		}
	})
}

// FuzzLearnSetCookie feeds arbitrary Set-Cookie lines from an upstream to
// the learning path: it must never panic, and a live PHPSESSID cookie
// must be learned.
func FuzzLearnSetCookie(f *testing.F) {
	for _, seed := range []string{"PHPSESSID=abc; path=/", "PHPSESSID=; Max-Age=0", "PHPSESSID=x; Expires=Thu, 01 Jan 1970 00:00:01 GMT", "other=1", "=", "PHPSESSID", "PHPSESSID=\"q\"; Max-Age=-1"} {
		f.Add(seed)
	}
	ctx := testContext(f)
	l := new(Learn)
	_ = l.Provision(ctx)
	f.Cleanup(func() { _ = l.Cleanup() })
	s := provision(f, ctx, Sticky{AppCookie: "PHPSESSID"})
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{}
		h.Add("Set-Cookie", line)
		r := newRequest(&http.Cookie{Name: "PHPSESSID", Value: "before"})
		s.learn(context.Background(), r, h, "127.0.0.1:9001")
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != "PHPSESSID" {
			return
		}
		live := c.Value != "" && (c.MaxAge > 0 || (c.MaxAge == 0 && (c.Expires.IsZero() || c.Expires.After(time.Now()))))
		if live {
			if b, err := s.store.Get(context.Background(), s.StoreKey(c.Value)); err != nil || b.Upstream != "127.0.0.1:9001" {
				t.Fatalf("live cookie %q not learned: %v %q", line, err, b.Upstream)
			}
		}
	})
}
