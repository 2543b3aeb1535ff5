package harness

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"
)

// clientTimeout bounds one request of a simulated user, /slow included.
const clientTimeout = 10 * time.Second

// userTransport is shared by all simulated users: cookies, not
// connections, are what make one user different from another.
var userTransport = &http.Transport{
	Proxy:                 nil, // tests talk to loopback only, never through a proxy
	DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	MaxIdleConns:          256,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       30 * time.Second,
	ResponseHeaderTimeout: clientTimeout,
}

// NewClient is a simulated user: an HTTP client with its own cookie jar
// that does not follow redirects (a test inspects the Location itself).
func NewClient() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		panic(err) // cookiejar.New fails only on a bad PublicSuffixList
	}
	return &http.Client{
		Jar:       jar,
		Transport: userTransport,
		Timeout:   clientTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Get fetches url with c and returns the response with its body read in
// full; a transport error fails the test.
func Get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}
