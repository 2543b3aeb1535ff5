package testproc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartMemcached starts memcached on a free loopback port, TCP only, and
// waits until it answers `version`.
func StartMemcached(t testing.TB) *Proc {
	t.Helper()
	bin := lookPath(t, "memcached")
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0"}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root unless told which user to be.
		args = append(args, "-u", "root")
	}
	return Start(t, Spec{
		Name:  "memcached",
		Path:  bin,
		Args:  args,
		Addr:  addr,
		Ready: func() error { return PingMemcached(addr) },
	})
}

// PingMemcached sends `version` over the text protocol and answers nil if
// the reply is a VERSION line.
func PingMemcached(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("version\r\n")); err != nil {
		return fmt.Errorf("memcached version: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("memcached version: reading reply: %w", err)
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("memcached version: got %q, want VERSION ...", strings.TrimSpace(line))
	}
	return nil
}
