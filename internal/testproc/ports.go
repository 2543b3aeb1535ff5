package testproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Ports are drawn at random from below the kernel's ephemeral range: a port
// from inside it could be taken by some client's outgoing connection while
// its server is down between Kill and Restart.
const (
	portRangeLow   = 10000
	defaultEphemLo = 32768 // Linux default; read from /proc when available
)

var (
	portsMu     sync.Mutex
	portsIssued = map[int]bool{} // never hand out one port twice in a process
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on and that
// this test process has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	high := ephemeralLow()
	for range 1000 {
		port := portRangeLow + rand.IntN(high-portRangeLow)
		if portsIssued[port] || !canListen(port) {
			continue
		}
		portsIssued[port] = true
		return port
	}
	t.Fatalf("no free port on 127.0.0.1 in [%d, %d) after 1000 tries", portRangeLow, high)
	return 0
}

// FreeAddr is "127.0.0.1:<FreePort>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralLow is the first port the kernel hands out for outgoing
// connections.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemLo
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= portRangeLow+1000 {
		return defaultEphemLo
	}
	return lo
}

// DialTCP answers nil if something accepts TCP connections on addr.
func DialTCP(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}
