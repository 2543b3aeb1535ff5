package testproc

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis starts redis-server on a free loopback port, without
// persistence, and waits until it answers PING.
func StartRedis(t testing.TB) *Proc {
	t.Helper()
	return startRedis(t, "")
}

// StartRedisWithPassword is StartRedis with `requirepass password`: clients
// must AUTH before any other command.
func StartRedisWithPassword(t testing.TB, password string) *Proc {
	t.Helper()
	return startRedis(t, password)
}

func startRedis(t testing.TB, password string) *Proc {
	t.Helper()
	bin := lookPath(t, "redis-server")
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
	}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	return Start(t, Spec{
		Name:  "redis-server",
		Path:  bin,
		Args:  args,
		Addr:  addr,
		Ready: func() error { return PingRedis(addr, password) },
	})
}

// StartRedisTLS starts redis-server serving TLS only, with the given
// certificate and key (PEM files). Clients are not asked for certificates.
func StartRedisTLS(t testing.TB, certFile, keyFile string) *Proc {
	t.Helper()
	bin := lookPath(t, "redis-server")
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return Start(t, Spec{
		Name: "redis-server-tls",
		Path: bin,
		Args: []string{
			"--port", "0",
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", certFile,
			"--tls-key-file", keyFile,
			"--tls-auth-clients", "no",
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", t.TempDir(),
		},
		Addr: addr,
		// A TCP accept is all that can be checked without a TLS client.
		Ready: func() error { return DialTCP(addr) },
	})
}

// PingRedis sends PING (after AUTH when password is set) over raw RESP and
// answers nil if the reply is PONG.
func PingRedis(addr, password string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if password != "" {
		if err := redisCommand(conn, r, "+OK", "AUTH", password); err != nil {
			return err
		}
	}
	return redisCommand(conn, r, "+PONG", "PING")
}

// redisCommand writes args as a RESP array of bulk strings and checks that
// the one-line reply is want.
func redisCommand(conn net.Conn, r *bufio.Reader, want string, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return fmt.Errorf("redis %s: %w", args[0], err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("redis %s: reading reply: %w", args[0], err)
	}
	if got := strings.TrimRight(line, "\r\n"); got != want {
		return fmt.Errorf("redis %s: got %q, want %q", args[0], got, want)
	}
	return nil
}

// lookPath finds a server binary or fails the test, naming the make target
// that installs it: a missing dependency is a broken setup, not a reason to
// skip.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// Debian puts daemons (nginx, haproxy) in /usr/sbin, which a user's
	// PATH may leave out.
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, serr := exec.LookPath(dir + "/" + name); serr == nil {
			return p
		}
	}
	t.Fatalf("%s is not on PATH (%v): `make test` installs it (make deps: apt-get install redis-server redis-sentinel memcached wrk php-cli nginx haproxy)", name, err)
	return ""
}
