package harness

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/caddylb/caddylb/internal/testproc"
)

// Backend is a running demo backend (integration/demo/backend).
type Backend struct {
	// Name is b1, b2, ...: the X-Backend header of its responses.
	Name string
	// Addr is 127.0.0.1:port.
	Addr string

	proc *testproc.Proc
}

// StartBackends starts n demo backends, b1..bn, each on a free loopback
// port, and waits until each answers /health.
func StartBackends(t testing.TB, n int) []*Backend {
	t.Helper()
	bin := BackendBinary(t)
	backends := make([]*Backend, n)
	for i := range backends {
		name := "b" + strconv.Itoa(i+1)
		addr := testproc.FreeAddr(t)
		backends[i] = &Backend{
			Name: name,
			Addr: addr,
			proc: testproc.Start(t, testproc.Spec{
				Name:  "backend " + name,
				Path:  bin,
				Args:  []string{"-listen", addr, "-name", name},
				Addr:  addr,
				Ready: func() error { return healthy(addr) },
			}),
		}
	}
	return backends
}

// URL is http://<Addr><path>, for talking to the backend directly.
func (b *Backend) URL(path string) string { return "http://" + b.Addr + path }

// Kill sends SIGKILL and waits for the backend to exit.
func (b *Backend) Kill() { b.proc.Kill() }

// Stop sends SIGTERM (a graceful shutdown) and waits for the backend to exit.
func (b *Backend) Stop() { b.proc.Stop() }

// Restart starts the backend again on the same port and waits until it is
// healthy. Sessions it issued before are forgotten, as with a real app
// server that keeps sessions in memory.
func (b *Backend) Restart(t testing.TB) {
	t.Helper()
	b.proc.Restart(t)
}

// Log is what the backend wrote to stdout and stderr.
func (b *Backend) Log() string { return b.proc.Log() }

// Upstreams is the backends' addresses separated by spaces, as
// reverse_proxy takes them.
func Upstreams(backends []*Backend) string {
	addrs := make([]string, len(backends))
	for i, b := range backends {
		addrs[i] = b.Addr
	}
	return strings.Join(addrs, " ")
}

func healthy(addr string) error {
	resp, err := probeClient.Get("http://" + addr + "/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	return nil
}
