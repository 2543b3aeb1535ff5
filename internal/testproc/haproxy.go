package testproc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// StartHAProxyTCP starts HAProxy (Debian's) in front of target in mode
// tcp on a free loopback port, dialling target from source (127.0.0.x)
// with a PROXY protocol v2 header (send-proxy-v2): the setup of a cloud
// TCP load balancer in front of caddy-lb.
func StartHAProxyTCP(t testing.TB, target, source string) *Proc {
	t.Helper()
	bin := lookPath(t, "haproxy")
	dir := t.TempDir()
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf(`global
	maxconn 1024
defaults
	mode tcp
	timeout connect 2s
	timeout client 30s
	timeout server 30s
frontend front
	bind %s
	default_backend lb
backend lb
	server lb %s send-proxy-v2 source %s
`, addr, target, source)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return Start(t, Spec{Name: "haproxy", Path: bin, Args: []string{"-f", path, "-db"}, Addr: addr})
}
